"""A small wrapper of the kubernetes client for what the rollout does: read, patch and watch one
InferenceService, and read and patch the policy ConfigMap; and for the training pipeline's
distributed step and the out-of-core data steps: create and read a custom object (a
``PyTorchJob``, a KubeRay ``RayJob``).

The API host is injectable (``KubeApi(host="http://127.0.0.1:PORT")``) so tests run against an
in-process fake API server; without a host the in-cluster config is tried, then ``~/.kube/config``.
This module is the core's port to the kubernetes client: the only module of ``checkout_recs``
that imports ``kubernetes`` (``tests/code/test_layers.py`` lists it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


class DeployError(RuntimeError):
    """The API server refused or failed a request; the message has the status and reason."""


@dataclass(frozen=True)
class IsvcRef:
    """Which InferenceService and which policy ConfigMap a rollout acts on."""

    name: str = "checkout-recs"
    namespace: str = "checkout-recs"
    policy_configmap: str = "checkout-recs-policy"


class KubeApi:
    """Get/patch/watch an InferenceService and get/patch a ConfigMap.

    Parameters
    ----------
    host : str, optional
        API server URL. None: in-cluster service account, else the local kubeconfig.
    token : str, optional
        Bearer token for ``host`` (a service account token; never logged).
    verify_ssl : bool
        Verify the server certificate (ignored for ``http://`` hosts).
    """

    def __init__(
        self, host: str | None = None, token: str | None = None, verify_ssl: bool = True
    ) -> None:
        from kubernetes import (
            client,
        )  # lazy: the kubernetes client costs ~1 s and only cluster calls need it
        from kubernetes import (
            config as kconfig,  # lazy: the kubernetes client costs ~1 s and only cluster calls need it
        )

        if host:
            cfg = client.Configuration()
            cfg.host = host.rstrip("/")
            cfg.verify_ssl = verify_ssl
            if token:
                cfg.api_key = {"authorization": token}
                cfg.api_key_prefix = {"authorization": "Bearer"}
        else:
            try:
                kconfig.load_incluster_config()
            except kconfig.ConfigException:
                kconfig.load_kube_config()
            cfg = client.Configuration.get_default_copy()
        self._api = client.ApiClient(cfg)
        self.custom = client.CustomObjectsApi(self._api)
        self.core = client.CoreV1Api(self._api)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        import urllib3  # lazy: optional dependency (urllib3)
        from kubernetes.client.exceptions import (
            ApiException,  # lazy: the kubernetes client costs ~1 s and only cluster calls need it
        )

        try:
            return fn(*args, **kwargs)
        except ApiException as e:
            raise DeployError(f"{what}: HTTP {e.status} {e.reason}: {(e.body or '')[:300]}") from e
        except (OSError, urllib3.exceptions.HTTPError) as e:  # connection refused, DNS, TLS
            raise DeployError(f"{what}: {e}") from e

    def get_isvc(self, ref: IsvcRef) -> dict[str, Any]:
        """The InferenceService as a dict. Raises ``DeployError`` (404 when it does not exist)."""
        return self.get_custom(
            GROUP,
            VERSION,
            ref.namespace,
            PLURAL,
            ref.name,
            what=f"get isvc {ref.namespace}/{ref.name}",
        )

    def patch_isvc(self, ref: IsvcRef, body: dict[str, Any]) -> dict[str, Any]:
        """JSON merge patch (RFC 7386: ``None`` deletes a field); returns the patched object."""
        return self._call(
            f"patch isvc {ref.namespace}/{ref.name}",
            self.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            ref.namespace,
            PLURAL,
            ref.name,
            body,
        )

    def watch_isvc(
        self,
        ref: IsvcRef,
        until: Callable[[dict[str, Any]], bool],
        timeout_s: float,
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:
        """Watch the InferenceService until ``until(obj)`` holds; the object, or None on timeout.

        Watches with a ``metadata.name`` field selector (what the deployer Role allows) from
        ``resource_version`` (events after it), re-opening the stream until ``timeout_s``.
        """
        from kubernetes import (
            watch,
        )  # lazy: the kubernetes client costs ~1 s and only cluster calls need it

        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            w = watch.Watch()
            kwargs: dict[str, Any] = {
                "field_selector": f"metadata.name={ref.name}",
                "timeout_seconds": max(1, int(left)),
            }
            if resource_version:
                kwargs["resource_version"] = resource_version
            stream = w.stream(
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                ref.namespace,
                PLURAL,
                **kwargs,
            )
            found = self._call("watch isvc", _first_match, stream, until, deadline)
            w.stop()
            if found is not None:
                return found
        return None

    def create_custom(
        self, group: str, version: str, namespace: str, plural: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Create a custom object (a ``PyTorchJob``, a ``RayJob``); returns it as stored."""
        return self._call(
            f"create {plural} {namespace}/{body.get('metadata', {}).get('name')}",
            self.custom.create_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            body,
        )

    def get_custom(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        name: str,
        what: str | None = None,
    ) -> dict[str, Any]:
        """A custom object as a dict (``what``: how an error names the call). Raises
        ``DeployError`` (404 when it does not exist)."""
        return self._call(
            what or f"get {plural} {namespace}/{name}",
            self.custom.get_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            name,
        )

    def get_configmap_data(self, namespace: str, name: str) -> dict[str, str]:
        """``data`` of a ConfigMap (empty dict when it has none)."""
        cm = self._call(
            f"get configmap {namespace}/{name}",
            self.core.read_namespaced_config_map,
            name,
            namespace,
        )
        return dict(cm.data or {})

    def patch_configmap_data(
        self, namespace: str, name: str, data: dict[str, str]
    ) -> dict[str, str]:
        """Set keys of a ConfigMap's ``data`` (JSON patch ``add`` ops); returns the new data."""
        ops = [
            {"op": "add", "path": f"/data/{_escape(k)}", "value": str(v)} for k, v in data.items()
        ]
        cm = self._call(
            f"patch configmap {namespace}/{name}",
            self.core.patch_namespaced_config_map,
            name,
            namespace,
            ops,
        )
        return dict(cm.data or {})


def _first_match(
    stream: Any, until: Callable[[dict[str, Any]], bool], deadline: float
) -> dict[str, Any] | None:
    """The first watched object that satisfies ``until``; None when the stream ends or time is up."""
    for event in stream:
        obj = event.get("object") or {}
        if event.get("type") in ("ADDED", "MODIFIED") and until(obj):
            return obj
        if time.monotonic() > deadline:
            return None
    return None


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
