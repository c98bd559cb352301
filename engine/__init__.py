"""The avatar engine: audio in, lip-synced avatar windows out. Knows no sockets (see DESIGN.md)."""
