"""How every capability speaks: the durable outbox, the announcer (which room), the live feed."""
