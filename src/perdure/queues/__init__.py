"""Queues: definitions, the pure arithmetic of their limits, and the dequeue loop."""
