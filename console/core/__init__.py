"""The leaf layer every other part of rolldeck stands on.

Events (the typed, frozen facts), the pure reducer over them, the bounded bus,
operator commands, input errors and the small shared rules (one event describer,
one YAML walker, secret masking, text shortening). Nothing here imports the rest of
rolldeck, Textual, asyncssh or the network: import-linter holds that line.
"""
