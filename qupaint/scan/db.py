"""The flake database: chips, scans, images and flakes, through SQLAlchemy.

SQLite by default (a file next to the scan; write-ahead logging, so readers keep reading
while a scan writes), any SQLAlchemy URL otherwise (``postgresql://...``). The schema is
versioned by Alembic migrations shipped in :mod:`qupaint.scan.migrations`;
:func:`open_db` brings a database to the newest version before it is used.

Coordinates: every position is in *stage millimetres* (``x_mm`` to the right of the camera
image, ``y_mm`` down it, as the stage reports the frame's centre). A flake's mask is kept
on the chip's pixel grid (``mask_x``, ``mask_y``: the top-left pixel of its box, where pixel
``(i, j)`` of the grid is at stage ``(i, j) * um_per_px / 1000``) as COCO RLE.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

__all__ = ["Base", "Chip", "Flake", "Image", "Scan", "SCHEMA_VERSION", "database_url",
           "frame_corner", "open_db", "reading", "upgrade", "utcnow"]  # fmt: skip

#: the newest migration (qupaint/scan/migrations/versions)
SCHEMA_VERSION = "0001"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def frame_corner(x_mm: float, y_mm: float, width: int, height: int, um_per_px: float):
    """The top-left pixel, on the chip's pixel grid, of a frame whose centre the stage put
    at (``x_mm``, ``y_mm``)."""
    return (int(round(x_mm * 1000.0 / um_per_px - width / 2)),
            int(round(y_mm * 1000.0 / um_per_px - height / 2)))  # fmt: skip


class Base(DeclarativeBase):
    pass


class Chip(Base):
    __tablename__ = "chip"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    material: Mapped[str] = mapped_column(String(64))
    oxide_nm: Mapped[float | None] = mapped_column(Float, nullable=True)
    um_per_px: Mapped[float] = mapped_column(Float)
    camera: Mapped[str | None] = mapped_column(Text, nullable=True)  # Camera.to_dict JSON
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    scans: Mapped[list[Scan]] = relationship(back_populates="chip", cascade="all, delete-orphan")


class Scan(Base):
    __tablename__ = "scan"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chip_id: Mapped[int] = mapped_column(ForeignKey("chip.id", ondelete="CASCADE"), index=True)
    directory: Mapped[str] = mapped_column(Text)
    user: Mapped[str | None] = mapped_column(String(255), nullable=True)
    started: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    settings: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    chip: Mapped[Chip] = relationship(back_populates="scans")
    images: Mapped[list[Image]] = relationship(back_populates="scan",
                                               cascade="all, delete-orphan")  # fmt: skip
    __table_args__ = (UniqueConstraint("chip_id", "directory"),)


class Image(Base):
    __tablename__ = "image"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scan.id", ondelete="CASCADE"), index=True)
    file: Mapped[str] = mapped_column(Text)  # relative to the scan's directory
    seq: Mapped[int] = mapped_column(Integer)  # acquisition order
    x_mm: Mapped[float] = mapped_column(Float)  # the stage's reported centre
    y_mm: Mapped[float] = mapped_column(Float)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    fit_x_mm: Mapped[float | None] = mapped_column(Float, nullable=True)  # after stitching
    fit_y_mm: Mapped[float | None] = mapped_column(Float, nullable=True)
    detections: Mapped[int] = mapped_column(Integer, default=0)
    processed: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    #: why the frame could not be read (a truncated or corrupt file); None for a read frame
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    scan: Mapped[Scan] = relationship(back_populates="images")
    __table_args__ = (UniqueConstraint("scan_id", "file"),)


class Flake(Base):
    __tablename__ = "flake"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chip_id: Mapped[int] = mapped_column(ForeignKey("chip.id", ondelete="CASCADE"), index=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scan.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    material: Mapped[str] = mapped_column(String(64))
    layers: Mapped[int] = mapped_column(Integer, index=True)
    category: Mapped[int] = mapped_column(Integer)  # 1 Mono, 2 Few, 3 Thick
    probability: Mapped[float] = mapped_column(Float)  # the detector's score
    area_um2: Mapped[float] = mapped_column(Float, index=True)
    aspect: Mapped[float] = mapped_column(Float)
    max_side_um: Mapped[float] = mapped_column(Float)
    min_side_um: Mapped[float] = mapped_column(Float)
    contrast_r: Mapped[float] = mapped_column(Float)
    contrast_g: Mapped[float] = mapped_column(Float)
    contrast_b: Mapped[float] = mapped_column(Float)
    x_mm: Mapped[float] = mapped_column(Float, index=True)  # centroid, stage coordinates
    y_mm: Mapped[float] = mapped_column(Float, index=True)
    x0_mm: Mapped[float] = mapped_column(Float)  # box, stage coordinates
    y0_mm: Mapped[float] = mapped_column(Float)
    x1_mm: Mapped[float] = mapped_column(Float)
    y1_mm: Mapped[float] = mapped_column(Float)
    mask_x: Mapped[int] = mapped_column(Integer)  # the mask's box on the chip's pixel grid
    mask_y: Mapped[int] = mapped_column(Integer)
    mask_w: Mapped[int] = mapped_column(Integer)
    mask_h: Mapped[int] = mapped_column(Integer)
    mask_rle: Mapped[str] = mapped_column(Text)  # COCO RLE counts of the [mask_h, mask_w] box
    clipped: Mapped[bool] = mapped_column(Boolean, default=False)  # cut by every frame seen
    views: Mapped[int] = mapped_column(Integer, default=1)  # frames it was seen in
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # JPEG
    used: Mapped[bool] = mapped_column(Boolean, default=False)
    favourite: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


def database_url(db: str | Path) -> str:
    """A SQLAlchemy URL from ``--db``: a URL as it is, a path as a SQLite file."""
    s = str(db)
    if "://" in s:
        return s
    return f"sqlite:///{Path(s).expanduser().resolve()}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, nor it them
    cur.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint; WAL stays atomic
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema (Alembic ``upgrade head``)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _shown(url: str) -> str:
    """A database URL as it may be printed: its password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy reads: nothing to hide in it
        return url


def open_db(db: str | Path, migrate: bool = True) -> sessionmaker:
    """A session factory on the database ``db`` (path or URL), migrated to the newest schema."""
    import sqlalchemy.exc as sa_exc

    url = database_url(db)
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if not path.parent.is_dir():
            raise ValueError(f"db: folder {path.parent} does not exist; create it first")
        if path.is_dir():
            raise ValueError(f"db: {path} is a folder; give a database file in it")
    try:
        engine = create_engine(url)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
        raise ValueError(f"db: {_shown(url)} is no database this install can open ({exc}); "
                         "give a SQLite file, or a postgresql:// URL with the extra "
                         "'postgres' installed") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if migrate:
        try:
            upgrade(engine)
        except sa_exc.DBAPIError as exc:  # not a database, unreachable, refused
            engine.dispose()
            raise ValueError(f"db: cannot open {_shown(url)}: {exc.orig}") from None
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def reading(db: str | Path):
    """A session on ``db`` for one short read; its engine is closed afterwards, also when
    the read fails."""
    Session = open_db(db)
    try:
        with Session() as s:
            yield s
    finally:
        Session.kw["bind"].dispose()
