"""The IRC adapter: sans-I/O protocol, registration, channels, the wire and its delivery fence."""
