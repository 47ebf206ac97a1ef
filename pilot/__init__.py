"""pilot: a worker-node pilot agent, wire-compatible with PanDA (see README.md and ../shared/DESIGN.md)."""

__version__ = "0.1.0"
