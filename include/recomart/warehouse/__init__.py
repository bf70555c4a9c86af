"""The warehouse's own schema: numbered SQL migrations and the runner that applies them (:mod:`.migrate`)."""
