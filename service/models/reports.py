"""A model's report images (the manifest's `reports`: samples, reconstructions, training curves): links and reads.

Only files the manifest lists are served, only PNG and JPEG (an SVG or HTML file could carry script that a
browser would run on this origin), and only when they resolve to a regular file inside the models folder, by the
same confinement as the graphs (vaeformat/files.py). Anything else is a 404 that names the listed reports.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from vaeformat.errors import ManifestError
from vaeformat.files import open_confined, shown
from vaeformat.manifest import Manifest

from ..errors import ServiceError

MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
# Report images are tens of kilobytes; a larger file is a mistake in the model folder, not a report to send.
MAX_REPORT_BYTES = 16 * 1024 * 1024


class UnknownReport(ServiceError):
    status = 404
    title = "Unknown report"
    slug = "unknown-report"


def report_url(model: str, path: str) -> str:
    """Where GET /models/{name}/reports/{file} serves the report at `path` (as the manifest lists it)."""
    return f"/models/{quote(model, safe='')}/reports/{quote(path)}"


def read_report(manifest: Manifest, folder: Path, file: str, root: Path) -> tuple[bytes, str]:
    """(content, media type) of report `file` of the model in `folder`; UnknownReport (404) unless it is listed,
    an image, and a regular file inside the models folder `root`."""
    listed = {path: key for key, path in manifest.reports.items()}
    key = listed.get(file)
    if key is None:
        raise UnknownReport(
            f"model {manifest.name!r} lists no report {file!r}; its reports: {sorted(listed) or 'none'}"
        )
    media_type = MEDIA_TYPES.get(PurePosixPath(file).suffix.lower())
    if media_type is None:
        raise UnknownReport(
            f"report {file!r} of model {manifest.name!r} is not a PNG or JPEG image; only those are served"
        )
    where = f"{shown(folder, root)}/{file}"
    try:
        f, _ = open_confined(folder / file, root.resolve(), where, f"reports.{key}")
    except ManifestError as e:  # missing, a symlink out of the models folder, not a regular file, unreadable
        raise UnknownReport(str(e)) from None
    try:
        with f:
            size = os.fstat(f.fileno()).st_size
            content = f.read(MAX_REPORT_BYTES + 1)
    except OSError as e:
        raise UnknownReport(f"{where}: cannot be read ({e.strerror or e})") from None
    if max(size, len(content)) > MAX_REPORT_BYTES:
        raise UnknownReport(f"{where}: over {MAX_REPORT_BYTES} bytes, more than a report image; it is not served")
    return content, media_type
