"""Object metadata in an indexed SQLite table of its own (listing thousands of objects walks the
primary-key index, never a scan of JSON documents); the bytes live in the content-addressed blob
store under the `blob` key. Reads, writes with generation preconditions, patch, delete, listing
(prefix, delimiter, matchGlob, offsets) and the wire `storage#object`."""
from __future__ import annotations

import json
from typing import Any, Iterator
from urllib.parse import quote

from provision.emulator import discovery
from provision.emulator.store import distinct_values
from provision.emulator.storage.common import (PAGE_MAX, bucket_not_found, gcs_error, merge_patch, object_not_found,
                                               precondition_failed, proto_etag, rfc3339)
from provision.emulator.storage.globs import after_prefix, compile_glob, name_range
from provision.emulator.worldview import WorldView

SCAN_BATCH = 1000

# Object fields a caller may set at upload (or patch) and that we keep and echo back.
OBJECT_SETTABLE = ("cacheControl", "contentDisposition", "contentEncoding", "contentLanguage", "metadata",
                   "customTime", "temporaryHold", "eventBasedHold")

SCHEMA = ("CREATE TABLE IF NOT EXISTS storage_objects ("
          " bucket TEXT NOT NULL, name TEXT NOT NULL, generation INTEGER NOT NULL,"
          " metageneration INTEGER NOT NULL, size INTEGER NOT NULL, blob TEXT NOT NULL,"
          " content_type TEXT NOT NULL, md5 TEXT NOT NULL, crc32c TEXT NOT NULL, storage_class TEXT NOT NULL,"
          " created TEXT NOT NULL, updated TEXT NOT NULL, extra TEXT NOT NULL DEFAULT '{}',"
          " PRIMARY KEY (bucket, name)) WITHOUT ROWID")

_OBJ_COLS = ("name, generation, metageneration, size, blob, content_type, md5, crc32c, storage_class, created, "
             "updated, extra")


def check_conditions(current: dict | None, conditions: dict[str, int]) -> None:
    """ifGenerationMatch (0: must not exist) and friends; 412 when one does not hold."""
    gen = current["generation"] if current else 0
    mgen = current["metageneration"] if current else None
    if "ifGenerationMatch" in conditions and conditions["ifGenerationMatch"] != gen:
        raise precondition_failed()
    if "ifGenerationNotMatch" in conditions and conditions["ifGenerationNotMatch"] == gen:
        raise precondition_failed()
    if "ifMetagenerationMatch" in conditions and conditions["ifMetagenerationMatch"] != mgen:
        raise precondition_failed()
    if "ifMetagenerationNotMatch" in conditions and mgen is not None \
            and conditions["ifMetagenerationNotMatch"] == mgen:
        raise precondition_failed()


def validate_object_metadata(meta: Any) -> dict:
    """An upload's JSON metadata held to the discovery Object schema (unknown field: 400)."""
    if not isinstance(meta, dict):
        raise gcs_error(400, "Invalid JSON payload received: metadata must be an object.", "invalid")
    discovery.validate_request("storage.v1", "storage.objects.insert", meta)
    return meta


def object_resource(obj: dict, base: str) -> dict:
    """The wire `storage#object` (only fields of the discovery Object schema)."""
    bucket, name, gen = obj["bucket"], obj["name"], obj["generation"]
    qname = quote(name, safe="")
    out = {
        "kind": "storage#object", "id": f"{bucket}/{name}/{gen}",
        "selfLink": f"{base}storage/v1/b/{bucket}/o/{qname}",
        "mediaLink": f"{base}download/storage/v1/b/{bucket}/o/{qname}?generation={gen}&alt=media",
        "name": name, "bucket": bucket, "generation": str(gen), "metageneration": str(obj["metageneration"]),
        "contentType": obj["contentType"], "storageClass": obj["storageClass"], "size": str(obj["size"]),
        "md5Hash": obj["md5Hash"], "crc32c": obj["crc32c"], "etag": proto_etag(gen, obj["metageneration"]),
        "timeCreated": obj["timeCreated"], "updated": obj["updated"],
        "timeStorageClassUpdated": obj["timeCreated"], "timeFinalized": obj["timeCreated"],
    }
    if not obj["md5Hash"]:
        del out["md5Hash"]   # a composite object has no MD5 (docs: storage/docs/composite-objects)
    out.update(obj["extra"])
    return out


def _obj(bucket: str, row) -> dict:
    (name, gen, mgen, size, blob, ctype, md5, crc, sclass, created, updated, extra) = row
    return {"bucket": bucket, "name": name, "generation": gen, "metageneration": mgen, "size": size,
            "blob": blob, "contentType": ctype, "md5Hash": md5, "crc32c": crc, "storageClass": sclass,
            "timeCreated": created, "updated": updated, "extra": json.loads(extra)}


class ObjectTable:
    """The live objects of every bucket, one row each (no older generations are kept)."""

    def __init__(self, world: WorldView):
        self.world = world
        self.db = world.db

    def get(self, bucket: str, name: str) -> dict | None:
        """The live object's record (with `blob`, its blob-store key), or None."""
        row = self.db.execute(f"SELECT {_OBJ_COLS} FROM storage_objects WHERE bucket=? AND name=?",
                              (bucket, name)).fetchone()
        return _obj(bucket, row) if row else None

    def blob_refs(self, keys: list[str] | None) -> set[str]:
        """Which of `keys` (all when None) some object's bytes are (for the blob sweeper)."""
        return distinct_values(self.db, "storage_objects", "blob", keys)

    def any_in(self, bucket: str) -> bool:
        """Whether the bucket holds at least one object."""
        return self.db.execute("SELECT 1 FROM storage_objects WHERE bucket=? LIMIT 1", (bucket,)).fetchone() is not None

    def commit(self, bucket: str, rec: dict, name: str, *, blob: str, size: int, md5: str, crc32c: str,
               meta: dict, conditions: dict[str, int] | None = None, epoch: int | None = None,
               component_count: int | None = None, check: Any = None) -> dict:
        """Make stored bytes the live object `name` in `bucket` (record `rec`; a new generation),
        preconditions permitting. `epoch`: the world's epoch when the upload began; after a reset
        the bucket is gone (404). The caller has checked the name and that the bucket exists.
        `component_count` marks a composite object (md5 ""); `check()` runs inside the write's
        transaction first (a copy re-checks its source there)."""
        now = self.world.clock()
        stamp = rfc3339(now)
        ctype = meta.get("contentType") or "application/octet-stream"
        sclass = str(meta.get("storageClass") or rec["storageClass"]).upper()
        extra = {k: meta[k] for k in OBJECT_SETTABLE if meta.get(k) is not None}
        if component_count is not None:
            extra["componentCount"] = component_count
        with self.db.transaction():
            if epoch is not None and epoch != self.world.epoch:
                raise bucket_not_found()
            if check is not None:
                check()
            current = self.get(bucket, name)
            check_conditions(current, conditions or {})
            gen = int(now * 1_000_000)
            if current and gen <= current["generation"]:
                gen = current["generation"] + 1
            self.db.execute(
                f"INSERT OR REPLACE INTO storage_objects ({_OBJ_COLS}, bucket) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (name, gen, 1, size, blob, ctype, md5, crc32c, sclass, stamp, stamp, json.dumps(extra), bucket))
        if current and current["blob"] != blob:
            self.world.blobs_dirty()   # the overwritten bytes may be nobody's now
        return {"bucket": bucket, "name": name, "generation": gen, "metageneration": 1, "size": size, "blob": blob,
                "contentType": ctype, "md5Hash": md5, "crc32c": crc32c, "storageClass": sclass,
                "timeCreated": stamp, "updated": stamp, "extra": extra}

    def patch(self, bucket: str, name: str, body: dict, conditions: dict[str, int]) -> dict:
        """objects.patch: settable fields merge-patched, metageneration bumped."""
        with self.db.transaction():
            current = self.get(bucket, name)
            if current is None:
                raise object_not_found(bucket, name)
            check_conditions(current, conditions)
            extra = current["extra"]
            for key in OBJECT_SETTABLE:
                if key not in body:
                    continue
                if body[key] is None:
                    extra.pop(key, None)
                elif isinstance(body[key], dict):
                    extra[key] = merge_patch(extra.get(key) or {}, body[key])
                else:
                    extra[key] = body[key]
            ctype = body.get("contentType") or current["contentType"]
            updated = rfc3339(self.world.clock())
            self.db.execute("UPDATE storage_objects SET metageneration=metageneration+1, content_type=?, updated=?, "
                            "extra=? WHERE bucket=? AND name=?", (ctype, updated, json.dumps(extra), bucket, name))
            rec = self.get(bucket, name)
            assert rec is not None   # updated just now, in this transaction
            return rec

    def delete(self, bucket: str, name: str, conditions: dict[str, int], generation: int | None = None) -> None:
        """objects.delete of the live object (404 when `generation` is given and not the live one)."""
        with self.db.transaction():
            current = self.get(bucket, name)
            if current is None or (generation is not None and generation != current["generation"]):
                raise object_not_found(bucket, name)
            check_conditions(current, conditions)
            self.db.execute("DELETE FROM storage_objects WHERE bucket=? AND name=?", (bucket, name))
        # The bytes are content-addressed and shared (DICOM instances too): the sweeper removes
        # them once nothing refers to them.
        self.world.blobs_dirty()

    def _rows(self, bucket: str, lo: str, hi: str | None, limit: int) -> list:
        if hi is None:
            return self.db.execute(f"SELECT {_OBJ_COLS} FROM storage_objects WHERE bucket=? AND name>=? "
                                   "ORDER BY name LIMIT ?", (bucket, lo, limit)).fetchall()
        return self.db.execute(f"SELECT {_OBJ_COLS} FROM storage_objects WHERE bucket=? AND name>=? AND name<? "
                               "ORDER BY name LIMIT ?", (bucket, lo, hi, limit)).fetchall()

    def list(self, bucket: str, *, prefix: str = "", delimiter: str = "", match_glob: str | None = None,
             start_offset: str = "", end_offset: str | None = None, cursor: str = "",
             max_results: int = PAGE_MAX, include_trailing_delimiter: bool = False,
             ) -> tuple[list[dict], list[str], str | None]:
        """One page of objects.list: (items, prefixes, cursor of the next page or None).
        Items and prefixes together fill at most `max_results` entries, as on Google."""
        regex, literal = compile_glob(match_glob) if match_glob else (None, "")
        bounds = name_range(prefix, literal, max(start_offset, cursor), end_offset or None)
        items: list[dict] = []
        prefixes: list[str] = []
        if bounds is None:
            return items, prefixes, None
        lo, hi = bounds
        while len(items) + len(prefixes) < max_results:
            rows = self._rows(bucket, lo, hi, SCAN_BATCH)
            if not rows:
                return items, prefixes, None
            restarted = False
            for row in rows:
                name = row[0]
                lo = name + "\x00"
                if regex is not None and not regex.fullmatch(name):
                    continue
                if delimiter:
                    cut = name.find(delimiter, len(prefix))
                    if cut >= 0:
                        common = name[:cut + len(delimiter)]
                        if include_trailing_delimiter and name == common:
                            items.append(_obj(bucket, row))
                        prefixes.append(common)
                        # skip the rest of this common prefix in one seek rather than row by row
                        nxt = after_prefix(common)
                        if nxt is None:
                            return items, prefixes, None
                        lo = nxt
                        restarted = True
                        break
                items.append(_obj(bucket, row))
                if len(items) + len(prefixes) >= max_results:
                    break
            if not restarted and len(rows) < SCAN_BATCH and len(items) + len(prefixes) < max_results:
                return items, prefixes, None
            if hi is not None and lo >= hi:
                return items, prefixes, None
        more = self._rows(bucket, lo, hi, 1)
        return items, prefixes, (lo if more else None)

    def iter(self, bucket: str, glob: str | None = None, prefix: str = "") -> Iterator[tuple[str, str, int]]:
        """(name, blob key, size) of the bucket's objects in name order, restricted to names that
        start with `prefix` and match `glob` (Healthcare import semantics, over the whole name:
        `*` any run without `/`, `**` any run, `?` one character other than `/`)."""
        regex, literal = compile_glob(glob, import_semantics=True) if glob else (None, "")
        bounds = name_range(prefix, literal, "", None)
        if bounds is None:
            return
        lo, hi = bounds
        while True:
            if hi is None:
                rows = self.db.execute("SELECT name, blob, size FROM storage_objects WHERE bucket=? AND name>=? "
                                       "ORDER BY name LIMIT ?", (bucket, lo, SCAN_BATCH)).fetchall()
            else:
                rows = self.db.execute("SELECT name, blob, size FROM storage_objects WHERE bucket=? AND name>=? "
                                       "AND name<? ORDER BY name LIMIT ?", (bucket, lo, hi, SCAN_BATCH)).fetchall()
            for name, blob, size in rows:
                if regex is None or regex.fullmatch(name):
                    yield name, blob, size
            if len(rows) < SCAN_BATCH:
                return
            lo = rows[-1][0] + "\x00"

    def usage(self) -> dict[str, tuple[int, int]]:
        """{bucket: (object count, total bytes)} for every bucket that holds objects."""
        return {b: (n, total or 0) for b, n, total in self.db.execute(
            "SELECT bucket, COUNT(*), SUM(size) FROM storage_objects GROUP BY bucket")}

    def clear(self) -> None:
        """Forget every object (a world reset; the blob store is the world's to clear)."""
        self.db.execute("DELETE FROM storage_objects")

