"""Multi-node training: jobs launched by torchrun or SLURM, one supervised run per node."""
