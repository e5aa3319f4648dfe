"""KFP v2 lightweight components, one per pipeline step, thin: parse inputs, call the core.

Every component runs in the component image (``docker/components.Dockerfile``), which has this
project installed, so no component lists ``packages_to_install`` and none installs kfp at start
(``kfp.local.SubprocessRunner(use_venv=False)`` would otherwise pip-install into our venv).
Imports of the core happen inside the function bodies: KFP ships only the function's source.

Modules: ``data`` (simulate, ingest, label), ``features`` (build, Feast apply + materialize,
training set), ``train``, ``bundle`` (index + candidate tables), ``evaluate``, ``register``
(promotion gate + publish), ``deploy`` (canary), ``monitor`` (drift), ``index_refresh``.

The decorator and the pinned image live in ``components._base`` (kept out of this file so the
component modules work even where ``components`` is imported as a namespace package, as an
editable install made before this file existed does).
"""
