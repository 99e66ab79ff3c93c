"""A site's settings.py: linohost's generated part above the marker line, the site's
own part below it.

Every command that rewrites the file keeps the own part byte for byte. The marker
holds a digest of the generated part: one edited by hand is refused (``--force``
keeps a dated copy and overwrites it). A file without the marker, written by an older
linohost, is migrated: the lines added to what linohost would have written move
below the marker, each said.
"""

import datetime
import difflib
import os
import shutil
from dataclasses import dataclass, field

from ..errors import LinohostError
from ..render import site as render_site


class EditedSettings(LinohostError):
    """The generated part of a site's settings.py was edited by hand."""

    exit_code = 1


@dataclass
class Own:
    """The own part of a site's settings and what was found on the way."""

    text: str = ""
    notes: list = field(default_factory=list)   # said to the operator
    edited: bool = False                        # the generated part was edited (forced)


def own_part(path, last_written, force=False):
    """The own part of the existing settings.py at *path* ("" if none).

    *last_written* is a function returning the generated part linohost would have
    written before this change (to find what was added to a file without marker).
    An edited generated part raises EditedSettings unless *force*."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Own()
    parts = render_site.split_settings(text)
    if parts:
        generated, digest, own = parts
        if digest == render_site.digest(generated):
            return Own(own)
        return _edited(path, Own(own, edited=True), force)
    return _migrated(path, text, last_written(), force)


def _migrated(path, text, last, force):
    """The own part of a file without marker: the lines added to *last* at top level."""
    old, new = last.splitlines(keepends=True), text.splitlines(keepends=True)
    own = Own(notes=[f"{path}: settings of its own move below linohost's marker line"])
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        added = new[j1:j2]
        if tag == "equal" or not "".join(old[i1:i2] + added).strip():
            continue                            # blank lines only
        if tag == "insert" and not added[0][:1].isspace():
            own.text += "".join(added)
            own.notes += [f"  kept: {line.rstrip()}" for line in added if line.strip()]
        else:                                   # a generated line changed or removed
            own.edited = True
    if not own.text:
        own.notes = []
    return _edited(path, own, force) if own.edited else own


def _edited(path, own, force):
    if not force:
        raise EditedSettings(
            f"{path} was edited above linohost's marker line: move your lines below it "
            f"(they are kept), or overwrite with --force (a dated copy is kept beside it)")
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    copy = path.with_name(f"{path.name}.{stamp}")
    shutil.copy2(path, copy)
    st = os.stat(path)
    os.chown(copy, st.st_uid, st.st_gid)
    own.notes.append(f"{path}: edited above the marker line; overwritten, "
                     f"the edited file is kept as {copy}")
    return own


def own_of_text(text):
    """The own part of a settings.py's *text* (e.g. an archive's): "" if it has none."""
    parts = render_site.split_settings(text)
    return parts[2] if parts else ""
