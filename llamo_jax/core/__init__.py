"""Core: meshes and sharding rules, frozen config dataclasses, config files and their args."""
