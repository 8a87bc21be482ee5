"""``python -m cli``: the ``prospero`` command."""

from cli.main import app

if __name__ == "__main__":  # not when a spawned worker process imports this module
    app(prog_name="prospero")
