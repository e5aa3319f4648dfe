"""The component decorator and image shared by every component module."""

from kfp import dsl

#: The component image, pinned by tag (built from docker/components.Dockerfile).
COMPONENT_IMAGE = "ghcr.io/checkout-recs/components:0.1.0"


def component(func=None, **kwargs):  # noqa: ANN001, ANN201 - mirrors dsl.component
    """``dsl.component`` with our image, no kfp install and no extra packages."""
    opts = {"base_image": COMPONENT_IMAGE, "install_kfp_package": False, **kwargs}
    if func is None:
        return lambda f: dsl.component(f, **opts)
    return dsl.component(func, **opts)
