"""Storage: the protocols domain code reaches it through (protocols.py), their value types
(types.py), and open_storage (open.py), the one place a backend is chosen; SQLite's is in
sqlite/."""
