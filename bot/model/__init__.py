"""The model of what is desired, applied and running, and the planner of the next step.

One place answers "what runs where", "does environment E contain commit X" (by ancestry in
the component's repository, never by comparing version strings), "is this move forward or
back", and "what should a person type next". The capabilities (deploy, status, monitors)
and the commands read it; every `next:` the bot says comes from `bot.model.planner`.
"""
