"""checkout_recs: the domain core of the post-checkout recommender.

Training, serving and evaluation share this package. It imports none of the platforms
(Kubeflow, KServe, Feast, Kubernetes, Evidently); their adapters live in the top-level folders
``components/``, ``kfp_pipelines/``, ``inference/``, ``feature_repo/``, ``monitoring/``.
"""

__version__ = "0.1.0"
