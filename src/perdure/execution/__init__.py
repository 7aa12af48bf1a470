"""The durable core: workflow and step execution, replay, recovery, handles."""
