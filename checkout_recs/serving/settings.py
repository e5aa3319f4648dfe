"""What the deployment gives the transformer: one typed settings object, from env and flags.

``ServingSettings`` is filled the same way wherever the transformer runs — ``checkout-recs serve``,
the demo, the benchmarks, a pod: defaults, overridden by ``CHECKOUT_RECS_*`` environment
variables (``ENV``), overridden by the transformer's command-line flags of the same name. The
manifests set the environment; local runs pass flags. Secrets (the Redis password, the Feast
registry URL) are read from the environment only, so they never appear in a pod's arguments or a
process listing.

``missing()`` lists what a cluster deployment (``deployment="cluster"``) must set and did not;
the transformer refuses to start with a non-empty list, and the manifest contract test
(``checkout_recs.deploy.entrypoints``) runs the same check on every rendered overlay.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

Deployment = Literal["local", "cluster"]
UserSource = Literal["bundle", "table", "feast"]
FeatureEnv = Literal["embedded", "production"]

#: Environment variable of each field (the manifests' names).
ENV: dict[str, str] = {
    "deployment": "CHECKOUT_RECS_DEPLOYMENT",
    "model_name": "CHECKOUT_RECS_MODEL_NAME",
    "users": "CHECKOUT_RECS_USERS",
    "user_table": "CHECKOUT_RECS_USER_TABLE",
    "feature_env": "CHECKOUT_RECS_FEATURE_ENV",
    "feast_features": "CHECKOUT_RECS_FEAST_FEATURES",
    "feast_work_dir": "CHECKOUT_RECS_FEAST_WORK_DIR",
    "feast_project": "CHECKOUT_RECS_FEAST_PROJECT",
    "feast_registry_url": "CHECKOUT_RECS_FEAST_REGISTRY_URL",
    "inventory": "CHECKOUT_RECS_INVENTORY_BACKEND",
    "inventory_unproven": "CHECKOUT_RECS_INVENTORY_UNPROVEN",
    "redis_url": "CHECKOUT_RECS_REDIS_URL",
    "redis_password": "CHECKOUT_RECS_REDIS_PASSWORD",
    "decision_log": "CHECKOUT_RECS_DECISION_LOG",
    "policy_dir": "CHECKOUT_RECS_POLICY_DIR",
    "policy_poll_s": "CHECKOUT_RECS_POLICY_POLL_S",
}
#: Fields read from the environment only (a flag for them is refused: secrets stay out of argv).
SECRET_FIELDS = frozenset({"redis_password", "feast_registry_url"})
DEFAULT_MODEL_NAME = "checkout-recs"


def redis_dsn(url: str, password: str | None) -> str:
    """``url`` with ``password`` as its AUTH credential (any credential in ``url`` replaced); ``url``
    itself when ``password`` is None or empty. What the Redis clients get, never what is logged."""
    if not password:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f":{quote(password, safe='')}@{host}"))


class ServingSettings(BaseModel):
    """Where the transformer's inputs and outputs are, as the deployment configures them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deployment: Deployment = Field(
        default="local",
        description="'local' (a laptop, tests, benchmarks: defaults allowed) or 'cluster' (a pod: every "
        "setting of missing() must be given, else the transformer refuses to start).",
    )
    model_name: str = Field(
        default=DEFAULT_MODEL_NAME,
        min_length=1,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Name the transformer answers under (/v1/models/<name>:predict); KServe passes the "
        "InferenceService's name as --model_name.",
    )
    users: UserSource = Field(
        default="bundle",
        description="User features: 'feast' (the online store of feature_env), 'bundle' (the table the "
        "bundle carries, frozen at build time) or 'table' (user_table, a parquet file).",
    )
    user_table: str | None = Field(
        default=None, description="Parquet of contract.USER_FEATURES rows (users='table')."
    )
    feature_env: FeatureEnv = Field(
        default="embedded",
        description="Feast environment (feature_repo/environments/<env>.yaml): 'embedded' (SQLite in "
        "feast_work_dir) or 'production' (Redis online store at redis_url, SQL registry).",
    )
    feast_features: str | None = Field(
        default=None,
        description="Feature tables folder or s3:// prefix the Feast sources name (default: the "
        "bundle's features/).",
    )
    feast_work_dir: str = Field(
        default="artifacts/feast",
        description="Writable folder for the rendered feature_store.yaml (and the embedded store); /tmp/... in a pod.",
    )
    feast_project: str | None = Field(
        default=None, description="Feast project (default: the feature repo's)."
    )
    feast_registry_url: SecretStr | None = Field(
        default=None,
        description="SQL registry of the production Feast environment (holds a password: env only).",
    )
    inventory: str = Field(
        default="memory",
        min_length=1,
        description="Live inventory backend, one of the transformer's --inventory choices ('memory' keeps "
        "sold/locked state in the process: local runs only).",
    )
    inventory_unproven: Literal["known", "refuse"] = Field(
        default="known",
        description="When a call's inventory lookup cannot be proven current (the replica stale or its "
        "read fence unread, the redis backend down): 'known' answers from the last known state, "
        "saying inventory_stale / inventory_unavailable (docs/serving.md, The stale rule: a residual "
        "risk remains for an event the replica never heard of); 'refuse' answers 503 + Retry-After "
        "and never shows a listing whose stock is unproven.",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis (or ElastiCache, rediss://) of inventory, switches, exploration ledger and the "
        "production online store; without a password (see redis_password).",
    )
    redis_password: SecretStr | None = Field(
        default=None, description="Redis AUTH token, from a Secret through the environment only."
    )
    decision_log: str | None = Field(
        default=None,
        description="Artifact store root of the decision log: a folder locally, s3://bucket/prefix in a cluster "
        "(boto3 reads AWS_* / IRSA); None writes no log.",
    )
    policy_dir: Path | None = Field(
        default=None,
        description="Mounted policy ConfigMap (policy.json, kill_switch): read at start, re-read when it changes.",
    )
    policy_config: Path | None = Field(
        default=None,
        description="A PolicyConfig JSON file read once at start (local runs); policy_dir wins.",
    )
    policy_poll_s: float = Field(
        default=5.0, gt=0, description="Seconds between checks of policy_dir for a changed file."
    )
    predictor_url: str = Field(
        default="http://127.0.0.1:8081",
        description="Base URL of the ranker predictor's REST server; from --predictor_url, else from KServe's "
        "--predictor_host.",
    )

    @classmethod
    def env_names(cls) -> frozenset[str]:
        """Every environment variable the settings read."""
        return frozenset(ENV.values())

    @classmethod
    def from_sources(cls, flags: Mapping[str, Any], environ: Mapping[str, str]) -> ServingSettings:
        """Defaults < ``environ`` (``ENV`` names) < ``flags`` (parsed flags by field name; None = not given).

        Raises ``ValueError`` when a secret field comes as a flag, pydantic's ``ValidationError``
        (a ``ValueError``) when a value is invalid.
        """
        values: dict[str, Any] = {
            f: environ[e] for f, e in ENV.items() if environ.get(e) not in (None, "")
        }
        given = {k: v for k, v in flags.items() if k in cls.model_fields and v is not None}
        leaked = SECRET_FIELDS & set(given)
        if leaked:
            raise ValueError(
                f"{sorted(leaked)} must come from the environment ({[ENV[f] for f in sorted(leaked)]}), "
                "never from a flag"
            )
        values.update(given)
        host = flags.get("predictor_host")
        if flags.get("predictor_url") is None and host:
            values["predictor_url"] = host if "://" in str(host) else f"http://{host}"
        return cls.model_validate(values)

    def redis_dsn(self) -> str:
        """``redis_url`` with ``redis_password`` put in (for the clients only; never logged)."""
        return redis_dsn(
            self.redis_url, self.redis_password.get_secret_value() if self.redis_password else None
        )

    def missing(self) -> list[str]:
        """What a cluster deployment lacks, one sentence each (empty locally or when complete)."""
        if self.deployment != "cluster":
            return []
        out = []
        given = self.model_fields_set
        if "users" not in given:
            out.append(
                f"no user-feature source ({ENV['users']}): the bundle's frozen table would serve"
            )
        if self.users == "feast" and self.feature_env != "production":
            out.append(
                f"users=feast with feature_env={self.feature_env}: the pod's embedded store is empty, every "
                f"checkout would be unknown_user (set {ENV['feature_env']}=production)"
            )
        if (
            self.users == "feast"
            and self.feature_env == "production"
            and self.feast_registry_url is None
        ):
            out.append(f"no Feast registry ({ENV['feast_registry_url']}, from a Secret)")
        if self.users == "table" and not self.user_table:
            out.append(f"users=table without a table ({ENV['user_table']})")
        if not self.decision_log:
            out.append(
                f"no decision log root ({ENV['decision_log']}): explain, disputes and the canary's GMV "
                "guardrail would have nothing"
            )
        elif not self.decision_log.startswith("s3://"):
            out.append(
                f"decision log root {self.decision_log!r} is not the artifact store (s3://...): a pod's disk "
                "goes with the pod"
            )
        if self.policy_dir is None:
            out.append(
                f"no policy folder ({ENV['policy_dir']}): the policy ConfigMap would be ignored"
            )
        if self.inventory == "memory":
            out.append(
                f"inventory=memory ({ENV['inventory']}): sold and locked listings would be shown"
            )
        if "redis_url" not in given:
            out.append(
                f"no Redis URL ({ENV['redis_url']}): the loopback default answers nothing in a pod"
            )
        return out
