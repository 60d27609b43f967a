"""``qupaint serve``: the flake database in the browser."""

from __future__ import annotations

from pathlib import Path

import typer

from qupaint.cli._common import app, console, fail, user_errors


@app.command()
def serve(
    db: str = typer.Option(..., help="The flake database (qupaint scan): a SQLite file or URL"),
    host: str = typer.Option(
        "127.0.0.1", help="Address to listen on; any other than this machine's own needs a token"
    ),
    port: int = typer.Option(8000, help="TCP port"),
    token: str = typer.Option(
        None,
        help="Require this token on every request (generated and printed when --host is not local)",
    ),
    token_file: Path = typer.Option(
        None,
        help="Read the token from this file's first line instead (kept off the command "
        "line; write a new one into it to rotate the token, no restart)",
    ),
    map_dir: Path = typer.Option(
        None, "--map", help="A `qupaint map --dzi` folder (default: map/ beside the database)"
    ),
    max_upload_mb: float = typer.Option(25.0, help="Largest upload (MB)"),
    workers: int = typer.Option(1, help="Processes that detect on uploads"),
    time_limit_s: float = typer.Option(60.0, help="Most seconds one upload's detection may take"),
):
    """A local web app: the chip map, a flake table with filters, each flake with its
    outline and readings (used / favourite / note saved at once), detection on an uploaded
    image and a click-to-calibrate page; JSON API under /api, docs at /docs."""
    import uvicorn

    from qupaint.web import LOCAL_HOSTS, create_app, new_token

    if "://" not in db and not Path(db).is_file():
        fail(f"--db {db} does not exist (qupaint scan writes it)")
    if token is not None and token_file is not None:
        fail("give --token or --token-file, not both")
    if host not in LOCAL_HOSTS and token is None and token_file is None:
        token = new_token()
    with user_errors():
        web = create_app(db, map_dir=map_dir, token=token, max_upload_mb=max_upload_mb,
                         hosts=(host,), workers=workers, time_limit_s=time_limit_s,
                         token_file=token_file)  # fmt: skip
    token = web.state.qupaint.current_token()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    console.print(f"serving {db} at {url}  (Ctrl-C stops)")
    uvicorn.run(web, host=host, port=port, log_level="warning")
