"""pilot: a worker-node pilot agent, wire-compatible with PanDA (see README.md and docs/)."""

__version__ = "0.1.0"
