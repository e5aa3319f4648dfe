"""Studies: runs that measure the library (coverage, ablations, the geo simulation), kept apart
from the code they study. Each is called by a CLI command or a benchmark, never by serving.

* ``ope_coverage`` — interval coverage of the off-policy estimators on a small marketplace;
* ``ope_sim_coverage`` — the same on the marketplace simulator;
* ``geo_experiment`` — the seed's results table reproduced as a simulated geo holdout (DiD);
* ``serving_policy`` — our serving policy as a simulator policy, for the geo experiment;
* ``ranker_ablation`` — ranker architecture × loss and training procedure on simulated data.
"""
