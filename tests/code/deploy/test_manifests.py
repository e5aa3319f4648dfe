"""Manifests: every overlay builds and validates; each check catches what it is for."""

from __future__ import annotations

import copy

import pytest
import yaml

from checkout_recs.deploy.crd_schema import strict_schema
from checkout_recs.deploy.isvc import layout, storage_uri, transformer_container
from checkout_recs.deploy.manifests import validate_core, validate_resources
from checkout_recs.deploy.semantics import semantic_findings
from tests.fixtures_ops import CRD_DIR, MANIFESTS, find, kserve_schemas, rendered  # noqa: F401

EXPECTED_TARGETS = {
    "overlays/local",
    "overlays/staging",
    "overlays/production",
    "overlays/staging-collocated",
    "training",
}


def _checks(report) -> set[str]:  # noqa: ANN001
    return {f.check for f in report.findings}


def test_every_target_builds(rendered):  # noqa: F811
    assert set(rendered) >= EXPECTED_TARGETS
    for name, docs in rendered.items():
        assert docs, name


@pytest.mark.parametrize("target", sorted(EXPECTED_TARGETS))
def test_target_is_valid(target, rendered, kserve_schemas):  # noqa: F811
    report = validate_resources(target, rendered[target], kserve_schemas)
    assert report.ok, "\n".join(map(str, report.findings))
    for res, source in report.schema_sources.items():
        assert source != "none", res


def test_real_crds_are_used_when_present(rendered, kserve_schemas):  # noqa: F811
    report = validate_resources("s", rendered["overlays/staging"], kserve_schemas)
    source = report.schema_sources["InferenceService/checkout-recs"]
    if CRD_DIR.is_dir():
        assert source.startswith("crd:") and "serving.kserve.io_inferenceservices" in source
    else:  # the fixture warned; the report must say which schema replaced the CRD
        assert source.startswith("kserve-sdk")


def test_isvc_has_what_the_brief_asks(rendered):  # noqa: F811
    isvc = find(rendered["overlays/production"], "InferenceService")
    spec = isvc["spec"]["predictor"]
    assert spec["minReplicas"] == 3 and spec["maxReplicas"] == 20
    assert spec["scaleTarget"] and spec["timeout"]
    assert all(c["resources"]["limits"]["memory"] for c in spec["containers"])
    split = find(rendered["overlays/staging"], "InferenceService")
    assert layout(split) == "split" and {"transformer", "predictor"} <= set(split["spec"])


@pytest.mark.parametrize("target", ["overlays/production", "overlays/staging-collocated"])
def test_production_serves_the_pair_collocated(target, rendered):  # noqa: F811
    """One pod, one revision, one STORAGE_URI: a canary moves transformer and ranker together."""
    isvc = find(rendered[target], "InferenceService")
    assert layout(isvc) == "collocated" and "transformer" not in isvc["spec"]
    pred = isvc["spec"]["predictor"]
    assert [c["name"] for c in pred["containers"]] == ["kserve-container", "transformer-container"]
    uris = [e for c in pred["containers"] for e in c.get("env") or [] if e["name"] == "STORAGE_URI"]
    assert (
        len(uris) == 1 and storage_uri(isvc) == uris[0]["value"]
    )  # the ranker's; KServe mounts it into both
    t = transformer_container(isvc)
    assert (
        "--predictor_url=http://127.0.0.1:8085" in t["args"] and "--bundle=/mnt/models" in t["args"]
    )
    assert [p["containerPort"] for c in pred["containers"] for p in c.get("ports") or []] == [8080]
    base = yaml.safe_load((MANIFESTS / "base" / "inferenceservice.yaml").read_text())["spec"][
        "transformer"
    ]
    assert (pred["containerConcurrency"], pred["scaleTarget"]) == (
        base["containerConcurrency"],
        base["scaleTarget"],
    )


@pytest.mark.parametrize(
    "fault, says",
    [
        (
            lambda c: c[1]["env"].insert(0, {"name": "STORAGE_URI", "value": "s3://b/x"}),
            "sets STORAGE_URI",
        ),
        (lambda c: c[0].update(ports=[{"containerPort": 8085}]), "2 container ports"),
        (lambda c: c[1]["args"].append("--predictor_url=http://127.0.0.1:8081"), "does not reach"),
        (lambda c: c[1].update(name="transformer"), "KServe needs"),
    ],
)
def test_semantics_catch_a_broken_collocation(rendered, fault, says):  # noqa: F811
    docs = copy.deepcopy(rendered["overlays/production"])
    fault(find(docs, "InferenceService")["spec"]["predictor"]["containers"])
    found = [f.message for f in semantic_findings(docs) if f.check == "collocation"]
    assert any(says in m for m in found), found


def test_production_uses_elasticache_and_no_plain_secret(rendered):  # noqa: F811
    docs = rendered["overlays/production"]
    svc = find(docs, "Service", "checkout-recs-redis")
    assert (
        svc["spec"]["type"] == "ExternalName"
        and "cache.amazonaws.com" in svc["spec"]["externalName"]
    )
    # no in-cluster Redis: the only Deployments are the inventory consumer
    # (test_inventory_consumer_manifest.py) and the drift exporter (tests/e2e/monitoring/test_exporter.py)
    assert sorted(d["metadata"]["name"] for d in docs if d["kind"] == "Deployment") == [
        "checkout-recs-drift-exporter",
        "checkout-recs-inventory-consumer",
    ]
    c = transformer_container(find(docs, "InferenceService"))
    token = next(e for e in c["env"] if e["name"] == "CHECKOUT_RECS_REDIS_PASSWORD")
    assert "secretKeyRef" in token["valueFrom"] and "value" not in token
    assert not any(
        "REDIS" in a for a in c["args"]
    )  # the password and the URL reach the code through env
    url = next(e for e in c["env"] if e["name"] == "CHECKOUT_RECS_REDIS_URL")["value"]
    assert url.startswith("rediss://") and "@" not in url and "cache.amazonaws.com" in url
    assert not [d for d in docs if d["kind"] == "Secret"]


def test_irsa_annotation_per_environment(rendered):  # noqa: F811
    arns = {
        t: find(rendered[f"overlays/{t}"], "ServiceAccount", "checkout-recs-serving")["metadata"][
            "annotations"
        ]["eks.amazonaws.com/role-arn"]
        for t in ("staging", "production")
    }
    assert "staging" in arns["staging"] and "prod" in arns["production"]


# ------------------------------------------------------------------- each layer catches its fault


def _mutated(rendered, fn):  # noqa: ANN001, F811
    docs = copy.deepcopy(rendered["overlays/staging"])
    fn(docs)
    return docs


def test_crd_schema_rejects_a_typo_and_a_wrong_type(rendered, kserve_schemas):  # noqa: F811
    def fault(docs):  # noqa: ANN001
        spec = find(docs, "InferenceService")["spec"]["predictor"]
        spec["minReplica"] = 1
        spec["containers"][0]["resources"]["requests"]["cpu"] = {"cores": 1}

    report = validate_resources("s", _mutated(rendered, fault), kserve_schemas)
    msgs = [f.message for f in report.findings if f.check == "crd-schema"]
    assert any("minReplica" in m for m in msgs)
    assert any("requests.cpu" in m for m in msgs)


def test_unknown_custom_kind_fails_not_warns(rendered, kserve_schemas):  # noqa: F811
    docs = _mutated(
        rendered,
        lambda d: d.append(
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
        ),
    )
    report = validate_resources("s", docs, kserve_schemas)
    assert any(f.resource == "Widget/w" and "no CRD schema" in f.message for f in report.findings)


def test_core_kind_strict_rejects_unknown_field():
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x"},
        "data": {},
        "extra": 1,
    }
    assert any("extra" in e for e in validate_core(cm))
    del cm["extra"]
    assert validate_core(cm) == []


def test_semantics_catch_each_fault(rendered):  # noqa: F811
    def fault(docs):  # noqa: ANN001
        dep = find(docs, "Deployment", "checkout-recs-redis")
        c = dep["spec"]["template"]["spec"]["containers"][0]
        c["image"] = "redis:latest"
        del c["resources"]["limits"]
        c["securityContext"]["readOnlyRootFilesystem"] = False
        c["env"] = [{"name": "REDIS_PASSWORD", "value": "hunter2"}]
        dep["spec"]["selector"]["matchLabels"] = {"app.kubernetes.io/name": "other"}
        find(docs, "Service", "checkout-recs-redis")["spec"]["selector"] = {"app": "nothing"}
        find(docs, "Role")["rules"].append(
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
        )
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s"},
                "stringData": {"k": "v"},
            }
        )
        find(docs, "InferenceService")["spec"]["transformer"]["serviceAccountName"] = "ghost"
        find(docs, "InferenceService")["spec"]["predictor"]["containers"][0]["args"].append(
            "--x=$(NOT_DEFINED)"
        )

    found = {(f.check, f.resource) for f in semantic_findings(_mutated(rendered, fault))}
    assert ("image", "Deployment/checkout-recs-redis") in found
    assert ("resources", "Deployment/checkout-recs-redis") in found
    assert ("pod-security", "Deployment/checkout-recs-redis") in found
    assert ("secrets", "Deployment/checkout-recs-redis") in found
    assert ("selectors", "Deployment/checkout-recs-redis") in found
    assert ("selectors", "Service/checkout-recs-redis") in found
    assert ("rbac", "Role/checkout-recs-deployer") in found
    assert ("secrets", "Secret/s") in found
    assert ("references", "InferenceService/checkout-recs") in found
    msgs = [f.message for f in semantic_findings(_mutated(rendered, fault))]
    assert any("$(NOT_DEFINED)" in m for m in msgs) and any("ghost" in m for m in msgs)


def test_semantics_catch_a_secret_in_args_an_open_authz_rule_and_missing_probes(rendered):  # noqa: F811
    def fault(docs):  # noqa: ANN001
        c = find(docs, "InferenceService")["spec"]["transformer"]["containers"][0]
        # the earlier production shape: the AUTH token expanded into the Redis URL, the URL into an arg
        c["env"] += [
            {"name": "REDIS_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "x", "key": "t"}}},
            {"name": "REDIS_DSN", "value": "rediss://:$(REDIS_AUTH_TOKEN)@h:6379/0"},
        ]
        c["args"].append("--redis_url=$(REDIS_DSN)")
        del find(docs, "InferenceService")["spec"]["predictor"]["containers"][0]["livenessProbe"]
        find(docs, "AuthorizationPolicy", "checkout-recs-transformer")["spec"]["rules"].append(
            {"to": [{"operation": {"paths": ["/*"]}}]}
        )
        find(docs, "PodDisruptionBudget", "checkout-recs-predictor")["spec"]["selector"][
            "matchLabels"
        ] = {"a": "b"}

    found = [(f.check, f.message) for f in semantic_findings(_mutated(rendered, fault))]
    assert any(c == "secrets" and "$(REDIS_DSN)" in m for c, m in found)
    assert any(c == "probes" and "livenessProbe" in m for c, m in found)
    assert any(c == "authorization" and "admits any caller" in m for c, m in found)
    assert any(c == "selectors" and "{'a': 'b'}" in m for c, m in found)


def test_serving_pods_have_pdb_egress_and_authorization(rendered):  # noqa: F811
    for target in ("overlays/staging", "overlays/production", "overlays/staging-collocated"):
        docs = rendered[target]
        kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
        assert ("PodDisruptionBudget", "checkout-recs-predictor") in kinds
        assert ("NetworkPolicy", "checkout-recs-egress") in kinds
        assert ("AuthorizationPolicy", "checkout-recs-transformer") in kinds
        egress = find(docs, "NetworkPolicy", "checkout-recs-egress")["spec"]["egress"]
        assert {p["port"] for r in egress for p in r["ports"]} >= {53, 443}
        authz = find(docs, "AuthorizationPolicy", "checkout-recs-transformer")["spec"]
        paths = {p for r in authz["rules"] for t in r["to"] for p in t["operation"]["paths"]}
        assert paths == {
            "/v1/models/checkout-recs:predict",
            "/v2/models/checkout-recs/infer",
            "/metrics",
        }
        isvc = find(docs, "InferenceService")["spec"]
        for comp in ("transformer", "predictor"):
            for c in (isvc.get(comp) or {}).get("containers", []):
                assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live", (target, comp)


def test_semantics_clean_on_the_real_build(rendered):  # noqa: F811
    assert semantic_findings(rendered["overlays/production"]) == []


def test_strict_schema_closes_objects_and_allows_null():
    s = strict_schema(
        {
            "type": "object",
            "properties": {"a": {"type": "string", "nullable": True}},
            "x": {"type": "object", "properties": {}, "x-kubernetes-preserve-unknown-fields": True},
        }
    )
    assert s["additionalProperties"] is False
    assert s["properties"]["a"]["type"] == ["string", "null"]
    assert "additionalProperties" not in s["x"]


def test_load_schemas_uses_the_fallback_the_caller_passes(tmp_path):
    from checkout_recs.deploy.crd_schema import CrdSchemas
    from checkout_recs.deploy.validation import load_schemas

    with pytest.raises(FileNotFoundError):  # no CRDs and no fallback: the core has none of its own
        load_schemas(MANIFESTS, tmp_path / "no-crds")
    given = CrdSchemas()
    given.add("serving.kserve.io/v1beta1", "InferenceService", {"type": "object"}, "given")
    schemas, note = load_schemas(MANIFESTS, tmp_path / "no-crds", fallback=lambda: given)
    assert schemas.sources[("serving.kserve.io/v1beta1", "InferenceService")] == "given"
    assert note is not None and "given" in note
    with pytest.raises(FileNotFoundError):
        load_schemas(MANIFESTS, tmp_path / "no-crds", require_crds=True, fallback=lambda: given)


@pytest.mark.slow
def test_sdk_fallback_schema_catches_a_typo(rendered):  # noqa: F811
    from checkout_recs.deploy.crd_schema import load_schema_files
    from cli.kserve_schema import kserve_sdk_schemas

    schemas = load_schema_files(MANIFESTS / "schemas").merge(kserve_sdk_schemas())
    assert validate_resources("s", rendered["overlays/staging"], schemas).ok

    def fault(docs):  # noqa: ANN001
        find(docs, "InferenceService")["spec"]["transformer"]["scaleTargt"] = 3

    report = validate_resources("s", _mutated(rendered, fault), schemas)
    assert any("scaleTargt" in f.message for f in report.findings)
    assert report.schema_sources["InferenceService/checkout-recs"].startswith("kserve-sdk")


@pytest.mark.slow
def test_cli_validate_passes_and_says_when_crds_are_missing(tmp_path):
    from typer.testing import CliRunner

    from cli.app import app

    ok = CliRunner().invoke(app, ["manifests", "validate", "--manifests-dir", str(MANIFESTS)])
    assert ok.exit_code == 0, ok.output
    missing = CliRunner().invoke(
        app,
        [
            "manifests",
            "validate",
            "--manifests-dir",
            str(MANIFESTS),
            "--crd-dir",
            str(tmp_path),
            "--require-crds",
        ],
    )
    assert missing.exit_code == 1


def test_the_rayjob_is_checked_against_the_real_kuberay_crd(rendered, kserve_schemas):  # noqa: F811
    report = validate_resources("training", rendered["training"], kserve_schemas)
    assert report.schema_sources["RayJob/checkout-recs-data"] == "crd:ray.io_rayjobs.yaml"
    job = copy.deepcopy(find(rendered["training"], "RayJob"))
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplica"] = 4  # not in the CRD
    job["spec"]["backoffLimit"] = "two"  # an integer in the CRD
    others = [d for d in rendered["training"] if d["kind"] != "RayJob"]
    bad = validate_resources("training", [*others, job], kserve_schemas)
    messages = " ".join(f.message for f in bad.findings)
    assert "'maxReplica' was unexpected" in messages and "'two' is not of type" in messages
