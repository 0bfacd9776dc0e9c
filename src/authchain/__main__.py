"""`python -m authchain` is the `authchain` command."""

from authchain.cli import app

app(prog_name="authchain")
