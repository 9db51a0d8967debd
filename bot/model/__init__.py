"""The model of what is desired, applied and running where, and the one planner of next steps."""
