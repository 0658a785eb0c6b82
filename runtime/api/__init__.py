"""The Lambda-compatible mapping API (CreateEventSourceMapping and friends) on its own port."""
