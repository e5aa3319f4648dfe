"""The component decorator and image shared by every component module.

Every component runs kfp's executor after ``checkout_recs.log_format.configure_from_env``: its
log lines (kfp's own and the core's) are JSON objects with the request id (null in a pipeline)
and the bundle version (``$CHECKOUT_RECS_BUNDLE_VERSION`` where a step sets it), or text lines
with ``CHECKOUT_RECS_LOG_FORMAT=text``. kfp ships only a component function's source, so the
setup goes into the container command, not into the function.
"""

from kfp import dsl

#: The component image, pinned by tag (built from docker/components.Dockerfile).
COMPONENT_IMAGE = "ghcr.io/checkout-recs/components:0.1.0"
KFP_EXECUTOR = "python3 -m kfp.dsl.executor_main"
#: kfp's executor behind the logging setup (the module name stays in the command: kfp.local checks it).
LOGGED_EXECUTOR = (
    "python3 -c 'from checkout_recs.log_format import configure_from_env; configure_from_env(); "
    "from kfp.dsl.executor_main import executor_main; executor_main()'"
)


def with_structured_logs(comp):  # noqa: ANN001, ANN201 - a kfp PythonComponent
    """``comp`` with its container command running ``LOGGED_EXECUTOR`` instead of kfp's executor."""
    container = comp.component_spec.implementation.container
    container.command = [part.replace(KFP_EXECUTOR, LOGGED_EXECUTOR) for part in container.command]
    return comp


def component(func=None, **kwargs):  # noqa: ANN001, ANN201 - mirrors dsl.component
    """``dsl.component`` with our image, no kfp install, no extra packages, structured logs."""
    opts = {"base_image": COMPONENT_IMAGE, "install_kfp_package": False, **kwargs}
    if func is None:
        return lambda f: with_structured_logs(dsl.component(f, **opts))
    return with_structured_logs(dsl.component(func, **opts))
