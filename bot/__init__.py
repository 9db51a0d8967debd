"""deploybot: ChatOps for GitOps deploys of Kubernetes components."""

__version__ = "0.1.0"
