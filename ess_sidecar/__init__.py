"""ess-sidecar: an Emergency Stop System for automated trading, served over gRPC."""

__version__ = "0.1.0"
