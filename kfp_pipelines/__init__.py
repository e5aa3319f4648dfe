"""Kubeflow pipelines: ``training``, ``index_refresh`` (hourly) and ``monitoring`` (daily).

``registry.PIPELINES`` names them; ``compile.py`` writes ``compiled/<name>.yaml``; ``local.py``
runs one with ``kfp.local``; ``submit.py`` sends one to a Kubeflow Pipelines API server.
"""
