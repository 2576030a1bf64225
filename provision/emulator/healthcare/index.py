"""The DICOM index: studies, series and instances of every store in the shared SQLite database,
with the searchable attributes in indexed columns and each instance's DICOM JSON stored at
ingest, so QIDO is a query and WADO metadata a lookup.

Search follows Google's conformance statement: nine searchable keys (by keyword or tag), exact
matching, StudyDate ranges, prefix-token fuzzy PatientName, `includefield`, `limit`/`offset`
with Google's defaults and caps.

Results carry Google's default attributes of each level *only as they are in the stored
instance* (google-evidence.md §2.1, the golden output of Google's CLI integration test on the
live service): an attribute the file lacks is omitted, one it has empty is `{"vr": "XX"}` with
no `Value`. Nothing is synthesised: no InstanceAvailability, ModalitiesInStudy or
NumberOf*Related* counts (none is in Google's default lists, CONF §1.4).
"""
# Long module (issue 20): one SQLite schema and its queries (ingest, search, delete), read side by side.
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable

from provision.emulator.errors import invalid_argument
from provision.emulator.healthcare.dicomfile import Parsed, first, values
from provision.emulator.store import Database, distinct_values

# pydicom (a third of a second to import) is imported inside the functions that need it:
# most emulator sessions never reach those (see lazy.py).

SCHEMA = """
CREATE TABLE IF NOT EXISTS hc_stores (sid INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS hc_studies (
  id INTEGER PRIMARY KEY, sid INTEGER NOT NULL, study TEXT NOT NULL,
  patient_name TEXT, patient_id TEXT, accession TEXT, referring TEXT, study_date TEXT,
  modalities TEXT, n_series INTEGER DEFAULT 0, n_instances INTEGER DEFAULT 0, doc TEXT NOT NULL,
  UNIQUE (sid, study));
CREATE INDEX IF NOT EXISTS hc_studies_order ON hc_studies (sid, id);
CREATE INDEX IF NOT EXISTS hc_studies_pid ON hc_studies (sid, patient_id);
CREATE INDEX IF NOT EXISTS hc_studies_pn ON hc_studies (sid, patient_name);
CREATE INDEX IF NOT EXISTS hc_studies_acc ON hc_studies (sid, accession);
CREATE INDEX IF NOT EXISTS hc_studies_ref ON hc_studies (sid, referring);
CREATE INDEX IF NOT EXISTS hc_studies_date ON hc_studies (sid, study_date);
CREATE TABLE IF NOT EXISTS hc_pn_tokens (sid INTEGER NOT NULL, token TEXT NOT NULL, study TEXT NOT NULL,
  PRIMARY KEY (sid, token, study)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hc_pn_tokens_study ON hc_pn_tokens (sid, study);
CREATE TABLE IF NOT EXISTS hc_series (
  id INTEGER PRIMARY KEY, sid INTEGER NOT NULL, study TEXT NOT NULL, series TEXT NOT NULL,
  modality TEXT, n_instances INTEGER DEFAULT 0, doc TEXT NOT NULL,
  UNIQUE (sid, study, series));
CREATE INDEX IF NOT EXISTS hc_series_order ON hc_series (sid, id);
CREATE INDEX IF NOT EXISTS hc_series_uid ON hc_series (sid, series);
CREATE INDEX IF NOT EXISTS hc_series_modality ON hc_series (sid, modality);
CREATE TABLE IF NOT EXISTS hc_instances (
  id INTEGER PRIMARY KEY, sid INTEGER NOT NULL, study TEXT NOT NULL, series TEXT NOT NULL, sop TEXT NOT NULL,
  sop_class TEXT, blob TEXT NOT NULL, size INTEGER, ts TEXT, pixel TEXT, qdoc TEXT NOT NULL, meta TEXT NOT NULL,
  UNIQUE (sid, sop));
CREATE INDEX IF NOT EXISTS hc_instances_series ON hc_instances (sid, study, series, id);
CREATE INDEX IF NOT EXISTS hc_instances_order ON hc_instances (sid, id);
"""

# ---- attribute sets (tags as DICOM JSON keys) ----------------------------------------------------
STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
MODALITIES_IN_STUDY, N_STUDY_SERIES, N_STUDY_INSTANCES, N_SERIES_INSTANCES = "00080061", "00201206", "00201208", "00201209"
INSTANCE_AVAILABILITY = "00080056"

STUDY_DEFAULT = ("00080005", "00080020", "00080030", "00080050", INSTANCE_AVAILABILITY, "00080090", "00080201",
                 "00100010", "00100020", "00100030", "00100040", STUDY_UID, "00200010")
STUDY_EXTRA = ("00080051", "00080080", "00080096", "00081030", "00081032", "00081048", "00081049", "00081060",
               "00081062", "00081080", "00081084", "00081110", "00321032", "00321033", "00321060", "00380010",
               "00380300", "00200010")
# Our choice (Google's lists do not say): series and instance results also carry their parent UIDs,
# which a search across studies (`/series`, `/instances`) needs to address what it found.
SERIES_DEFAULT = ("00080005", "00080060", "00080201", "0008103E", SERIES_UID, "00400244", "00400245", "00400275",
                  STUDY_UID)
SERIES_EXTRA = ("00200011", "00200060", "00080021", "00080031", "00080070", "00081090", "00081010", "00180015",
                "00185100", "00181030", "00200052", "00081050", "00081052", "00081070", "00081111", "00400260",
                "00080080", "00081040", INSTANCE_AVAILABILITY)
INSTANCE_DEFAULT = ("00080005", "00080016", SOP_UID, INSTANCE_AVAILABILITY, "00080201", "00200013", "00280010",
                    "00280011", "00280100", "00280008", STUDY_UID, SERIES_UID)

# Attributes a server computes rather than reads from the instances (PS3.18 §10.6.3, PS3.4 C.3.4).
# Google rejects `includefield=AvailableTransferSyntaxUID` with 400 "unknown/unsupported QIDO
# attribute: AvailableTransferSyntaxUID" (google-evidence.md §2.2, wsidicom PR #149 against a real
# store) and lists none of the others in any of its attribute sets (CONF §1.4), so - our choice, by
# analogy - asking for any of them is the same 400.
UNSUPPORTED_FIELDS = frozenset({
    "00083002",   # AvailableTransferSyntaxUID
    MODALITIES_IN_STUDY, "00080062",   # SOPClassesInStudy
    N_STUDY_SERIES, N_STUDY_INSTANCES, N_SERIES_INSTANCES,
    "00201200", "00201202", "00201204",   # NumberOfPatientRelatedStudies/Series/Instances
})

LIMITS = {"study": (100, 5000), "series": (100, 5000), "instance": (1000, 50000)}
MAX_OFFSET = 1_000_000

# Searchable keys per level: keyword -> column (on the study table `s`, series `r`, or the level's own table).
STUDY_KEYS = {"StudyInstanceUID": STUDY_UID, "PatientName": "00100010", "PatientID": "00100020",
              "AccessionNumber": "00080050", "ReferringPhysicianName": "00080090", "StudyDate": "00080020"}
SERIES_KEYS = {**STUDY_KEYS, "SeriesInstanceUID": SERIES_UID, "Modality": "00080060"}
INSTANCE_KEYS = {**SERIES_KEYS, "SOPInstanceUID": SOP_UID}
KEYS_BY_LEVEL = {"study": STUDY_KEYS, "series": SERIES_KEYS, "instance": INSTANCE_KEYS}
LEVEL_WORD = {"study": "study", "series": "series", "instance": "instance"}
# Query parameters that are not search keys.
CONTROL_PARAMS = {"limit", "offset", "fuzzymatching", "includefield", "alt", "key", "access_token", "prettyPrint",
                  "$.xgafv", "callback", "fields", "quotaUser", "upload_protocol", "uploadType", "oauth_token"}

_DATE_RANGE = re.compile(r"^(\d{8})?-(\d{8})?$")
_TOKEN_SPLIT = re.compile(r"[\s^=,]+")


def tokens(name: str) -> set[str]:
    """Fuzzy-matching tokens of a person name: lower case, split on ^, =, commas and spaces."""
    return {t for t in _TOKEN_SPLIT.split(name.lower()) if t}


def tag_key(name: str) -> str | None:
    """A keyword or 8-hex-digit tag as a DICOM JSON key ('00100020'); None when it is neither."""
    if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
        return name.upper()
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(name)
    return f"{tag:08X}" if tag is not None else None


@dataclass
class Query:
    level: str                                      # study | series | instance
    filters: dict[str, list[str]] = field(default_factory=dict)   # keyword -> values
    fuzzy: bool = False
    fields: set[str] | None = None                  # extra tags; None with all_fields False = defaults only
    all_fields: bool = False
    limit: int = 100
    offset: int = 0


def parse_query(args, level: str) -> Query:
    """Turn QIDO query parameters (already percent-decoded) into a Query; 400s as Google answers them."""
    keys = KEYS_BY_LEVEL[level]
    by_tag = {tag: kw for kw, tag in keys.items()}
    q = Query(level)
    default, cap = LIMITS[level]
    q.limit = default
    extra: set[str] = set()
    for name in args:
        vals = args.getlist(name)
        if name == "limit":
            q.limit = _int_param(name, vals[-1]) or default
            q.limit = min(q.limit, cap)
        elif name == "offset":
            q.offset = _int_param(name, vals[-1])
            if q.offset > MAX_OFFSET:
                raise invalid_argument(f"offset must be at most {MAX_OFFSET}, got {q.offset}")
        elif name == "fuzzymatching":
            v = vals[-1].lower()
            if v not in ("true", "false", ""):
                raise invalid_argument(f"invalid value for fuzzymatching: {vals[-1]!r}; use true or false")
            q.fuzzy = v == "true"
        elif name == "includefield":
            for v in vals:
                for item in filter(None, (x.strip() for x in v.split(","))):
                    if item.lower() == "all":
                        q.all_fields = True
                        continue
                    tag = tag_key(item)
                    if tag is None or tag in UNSUPPORTED_FIELDS:
                        raise invalid_argument(f"unknown/unsupported QIDO attribute: {item}")
                    extra.add(tag)
        elif name in CONTROL_PARAMS:
            continue
        else:
            kw = name if name in keys else by_tag.get(name.upper())
            if kw is None:
                raise invalid_argument(f"{name} is not a supported {LEVEL_WORD[level]} level attribute for searching")
            value = vals[-1]
            if value == "":
                continue  # an empty key matches everything (universal matching)
            if kw == "StudyDate" and not (re.fullmatch(r"\d{8}", value) or _DATE_RANGE.match(value)) or value == "-":
                raise invalid_argument(f"invalid StudyDate value {value!r}: use YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
            # No wildcard matching: '*' and '?' are literal characters, as on Google.
            q.filters[kw] = [value]
    q.fields = extra or None
    return q


def _int_param(name: str, raw: str) -> int:
    try:
        v = int(raw)
    except ValueError:
        raise invalid_argument(f"invalid value for {name}: {raw!r}") from None
    if v < 0:
        raise invalid_argument(f"{name} must not be negative")
    return v


def _json_doc(meta: dict, tags: Iterable[str]) -> dict:
    return {t: meta[t] for t in tags if t in meta}


def _level_doc(meta: dict, level: str) -> dict:
    if level == "study":
        keep = {k: v for k, v in meta.items() if k.startswith("0010") or k in STUDY_DEFAULT or k in STUDY_EXTRA}
    else:
        keep = _json_doc(meta, SERIES_DEFAULT + SERIES_EXTRA)
    return dict(sorted(keep.items()))


def instance_qdoc(meta: dict) -> dict:
    return _json_doc(meta, INSTANCE_DEFAULT)


@dataclass
class IngestResult:
    sop_class: str
    sop: str
    study: str
    series: str
    outcome: str            # stored | duplicate | conflict
    detail: str = ""


class DicomIndex:
    def __init__(self, db: Database, on_release=lambda: None):
        self.db = db
        self.on_release = on_release   # called when instances are gone: their bytes may be nobody's
        self.write_lock = threading.Lock()   # one writer at a time (STOW, import, delete)
        with db.lock:
            db.conn.executescript(SCHEMA)
        self._migrate()

    # ---- stores ---------------------------------------------------------------------------
    # A store's sid is never reused (AUTOINCREMENT): rows written for a deleted or reset store
    # can never show up in a store created later under the same name.
    def _migrate(self) -> None:
        """Databases made before sids were AUTOINCREMENT: rebuild hc_stores keeping its rows."""
        row = self.db.conn.execute("SELECT sql FROM sqlite_master WHERE name='hc_stores'").fetchone()
        if row and "AUTOINCREMENT" not in row[0].upper():
            with self.db.transaction() as db:
                db.conn.execute("ALTER TABLE hc_stores RENAME TO hc_stores_old")
                db.conn.execute("CREATE TABLE hc_stores (sid INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL)")
                db.conn.execute("INSERT INTO hc_stores (sid, name) SELECT sid, name FROM hc_stores_old")
                db.conn.execute("DROP TABLE hc_stores_old")

    def store_id(self, name: str) -> int | None:
        """The sid of a store that exists in the index, or None."""
        with self.db.lock:
            row = self.db.conn.execute("SELECT sid FROM hc_stores WHERE name=?", (name,)).fetchone()
            return row[0] if row else None

    def add_store(self, name: str) -> int:
        """Create the index row of a new store (only the store's create calls this); its fresh sid."""
        with self.db.transaction() as db:
            db.conn.execute("DELETE FROM hc_stores WHERE name=?", (name,))
            sid = db.conn.execute("INSERT INTO hc_stores (name) VALUES (?)", (name,)).lastrowid
            assert sid is not None   # sqlite sets it on every INSERT
            return sid

    def store_alive(self, sid: int) -> bool:
        with self.db.lock:
            return self.db.conn.execute("SELECT 1 FROM hc_stores WHERE sid=?", (sid,)).fetchone() is not None

    def drop_store(self, name: str) -> None:
        with self.db.transaction() as db:
            for (sid,) in db.conn.execute("SELECT sid FROM hc_stores WHERE name=?", (name,)).fetchall():
                for table in ("hc_instances", "hc_series", "hc_studies", "hc_pn_tokens", "hc_stores"):
                    db.conn.execute(f"DELETE FROM {table} WHERE sid=?", (sid,))
        self.on_release()

    def blob_refs(self, keys: list[str] | None) -> set[str]:
        """Which blob keys instances use (for the blob sweeper)."""
        return distinct_values(self.db, "hc_instances", "blob", keys)

    def drop_stores_under(self, prefix: str) -> None:
        with self.db.transaction() as db:
            names = [r[0] for r in db.conn.execute("SELECT name FROM hc_stores WHERE name >= ? AND name < ?",
                                                   (prefix, prefix + "\U0010ffff"))]
            for n in names:
                self.drop_store(n)

    def reset(self) -> None:
        with self.db.transaction() as db:
            for table in ("hc_instances", "hc_series", "hc_studies", "hc_pn_tokens", "hc_stores"):
                db.conn.execute(f"DELETE FROM {table}")

    def summary(self) -> dict:
        out = {}
        with self.db.lock:
            stores = self.db.conn.execute("SELECT sid, name FROM hc_stores ORDER BY name").fetchall()
            for sid, name in stores:
                counts = [self.db.conn.execute(f"SELECT count(*) FROM {t} WHERE sid=?", (sid,)).fetchone()[0]
                          for t in ("hc_studies", "hc_series", "hc_instances")]
                out[name] = dict(zip(("studies", "series", "instances"), counts, strict=True))
        return out

    # ---- ingest ---------------------------------------------------------------------------
    # Long on purpose (issue 20): one transaction: read what is stored, sort each instance, write the rows.
    def ingest(self, sid: int, items: list[tuple[Parsed, str, int]]) -> list[IngestResult] | None:
        """Store parsed instances (with their blob key and size) in one transaction; None (and
        nothing written) when the store `sid` no longer exists (deleted or reset meanwhile).

        An instance whose SOP Instance UID is already stored with the same bytes is a no-op success
        (`duplicate`); with different bytes or under another study/series it is a `conflict`.
        """
        results: list[IngestResult] = []
        with self.write_lock, self.db.transaction() as db:
            conn = db.conn
            if conn.execute("SELECT 1 FROM hc_stores WHERE sid=?", (sid,)).fetchone() is None:
                return None
            sops = [p.sop for p, _, _ in items]
            existing: dict[str, tuple] = {}
            for chunk in _chunks(sops, 500):
                marks = ",".join("?" * len(chunk))
                for sop, blob, study, series in conn.execute(
                        f"SELECT sop, blob, study, series FROM hc_instances WHERE sid=? AND sop IN ({marks})", (sid, *chunk)):
                    existing[sop] = (blob, study, series)
            rows, new_series, new_studies, token_rows = [], {}, {}, []
            touched: set[str] = set()
            for parsed, blob, size in items:
                prior = existing.get(parsed.sop)
                if prior is not None:
                    same = prior == (blob, parsed.study, parsed.series)
                    results.append(IngestResult(parsed.sop_class, parsed.sop, parsed.study, parsed.series,
                                                "duplicate" if same else "conflict",
                                                "" if same else "An instance already exists in this DICOM Store with the "
                                                "same Study/Series/SOPInstance UID, but the DICOM files differ (checksum mismatch)."))
                    continue
                existing[parsed.sop] = (blob, parsed.study, parsed.series)
                meta = parsed.meta
                rows.append((sid, parsed.study, parsed.series, parsed.sop, parsed.sop_class, blob, size,
                             parsed.transfer_syntax, json.dumps(parsed.pixel) if parsed.pixel else None,
                             json.dumps(instance_qdoc(meta), separators=(",", ":")),
                             json.dumps(meta, separators=(",", ":"))))
                key = (parsed.study, parsed.series)
                if key not in new_series:
                    new_series[key] = (sid, parsed.study, parsed.series, first(meta, "00080060"),
                                       json.dumps(_level_doc(meta, "series"), separators=(",", ":")))
                if parsed.study not in new_studies:
                    pn = first(meta, "00100010")
                    new_studies[parsed.study] = (
                        sid, parsed.study, pn, first(meta, "00100020"), first(meta, "00080050"),
                        first(meta, "00080090"), first(meta, "00080020"),
                        json.dumps(_level_doc(meta, "study"), separators=(",", ":")))
                    for v in values(meta, "00100010"):
                        for name in (v.get("Alphabetic"), v.get("Ideographic"), v.get("Phonetic")):
                            for tok in tokens(name or ""):
                                token_rows.append((sid, tok, parsed.study))
                touched.add(parsed.study)
                results.append(IngestResult(parsed.sop_class, parsed.sop, parsed.study, parsed.series, "stored"))
            if rows:
                conn.executemany("INSERT INTO hc_instances (sid, study, series, sop, sop_class, blob, size, ts, pixel, qdoc, meta)"
                                 " VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
                conn.executemany("INSERT OR IGNORE INTO hc_series (sid, study, series, modality, doc) VALUES (?,?,?,?,?)",
                                 list(new_series.values()))
                conn.executemany("INSERT OR IGNORE INTO hc_studies (sid, study, patient_name, patient_id, accession, "
                                 "referring, study_date, doc) VALUES (?,?,?,?,?,?,?,?)", list(new_studies.values()))
                conn.executemany("INSERT OR IGNORE INTO hc_pn_tokens (sid, token, study) VALUES (?,?,?)", token_rows)
                self._recount(conn, sid, touched)
        return results

    def _recount(self, conn, sid: int, studies: Iterable[str]) -> None:
        """Refresh the per-series and per-study counts (and ModalitiesInStudy) of the touched
        studies, dropping series and studies left empty: set-based, one statement per step."""
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS hc_touched (study TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM hc_touched")
        conn.executemany("INSERT OR IGNORE INTO hc_touched (study) VALUES (?)", [(x,) for x in studies])
        touched = "study IN (SELECT study FROM temp.hc_touched)"
        conn.execute(f"UPDATE hc_series SET n_instances=(SELECT count(*) FROM hc_instances i WHERE i.sid=hc_series.sid "
                     f"AND i.study=hc_series.study AND i.series=hc_series.series) WHERE sid=? AND {touched}", (sid,))
        conn.execute(f"DELETE FROM hc_series WHERE sid=? AND {touched} AND n_instances=0", (sid,))
        agg: dict[str, list] = {}
        for study, modality, n_series, n_inst in conn.execute(
                f"SELECT study, modality, count(*), sum(n_instances) FROM hc_series WHERE sid=? AND {touched} "
                "GROUP BY study, modality", (sid,)):
            a = agg.setdefault(study, [0, 0, set()])
            a[0] += n_series
            a[1] += n_inst
            if modality:
                a[2].add(modality)
        conn.executemany("UPDATE hc_studies SET n_series=?, n_instances=?, modalities=? WHERE sid=? AND study=?",
                         [(a[0], a[1], "\\".join(sorted(a[2])), sid, study) for study, a in agg.items()])
        conn.execute(f"UPDATE hc_studies SET n_series=0 WHERE sid=? AND {touched} AND study NOT IN "
                     "(SELECT study FROM hc_series WHERE sid=?)", (sid, sid))
        conn.execute(f"DELETE FROM hc_pn_tokens WHERE sid=? AND {touched} AND study IN "
                     f"(SELECT study FROM hc_studies WHERE sid=? AND {touched} AND n_series=0)", (sid, sid))
        conn.execute(f"DELETE FROM hc_studies WHERE sid=? AND {touched} AND n_series=0", (sid,))

    # ---- delete ---------------------------------------------------------------------------
    def delete(self, sid: int, study: str, series: str | None = None, sop: str | None = None) -> int:
        """Delete a study, series or instance; returns the number of instances removed."""
        where, params = "sid=? AND study=?", [sid, study]
        if series is not None:
            where, params = where + " AND series=?", params + [series]
        if sop is not None:
            where, params = where + " AND sop=?", params + [sop]
        with self.write_lock, self.db.transaction() as db:
            n = db.conn.execute(f"DELETE FROM hc_instances WHERE {where}", params).rowcount
            if n:
                self._recount(db.conn, sid, [study])
        if n:
            self.on_release()
        return n

    # ---- lookups --------------------------------------------------------------------------
    def instances(self, sid: int, study: str, series: str | None = None, sop: str | None = None,
                  columns: str = "study, series, sop, sop_class, blob, size, ts, pixel") -> list[tuple]:
        where, params = "sid=? AND study=?", [sid, study]
        if series is not None:
            where, params = where + " AND series=?", params + [series]
        if sop is not None:
            where, params = where + " AND sop=?", params + [sop]
        with self.db.lock:
            return self.db.conn.execute(f"SELECT {columns} FROM hc_instances WHERE {where} ORDER BY id", params).fetchall()

    def all_instances(self, sid: int, columns: str = "study, series, sop, blob") -> list[tuple]:
        with self.db.lock:
            return self.db.conn.execute(f"SELECT {columns} FROM hc_instances WHERE sid=? ORDER BY id", (sid,)).fetchall()

    def study_exists(self, sid: int, study: str) -> bool:
        with self.db.lock:
            return self.db.conn.execute("SELECT 1 FROM hc_studies WHERE sid=? AND study=?", (sid, study)).fetchone() is not None

    # ---- search ---------------------------------------------------------------------------
    # Long on purpose (issue 20): builds one SQL statement (joins, filters, order, paging) in the order SQL reads.
    def search(self, sid: int, q: Query, *, study: str | None = None, series: str | None = None) -> list[dict]:
        level = q.level
        own = {"study": "s", "series": "r", "instance": "i"}[level]
        joins = []
        where = [f"{own}.sid=?"]
        params: list[Any] = [sid]
        need_s = level != "study" and any(k in q.filters for k in STUDY_KEYS if k != "StudyInstanceUID")
        need_r = level == "instance" and "Modality" in q.filters
        if level == "instance" and need_r:
            joins.append("JOIN hc_series r ON r.sid=i.sid AND r.study=i.study AND r.series=i.series")
        if need_s:
            joins.append(f"JOIN hc_studies s ON s.sid={own}.sid AND s.study={own}.study")
        if study is not None:
            where.append(f"{own}.study=?")
            params.append(study)
        if series is not None:
            where.append(f"{own}.series=?")
            params.append(series)
        for kw, vals in q.filters.items():
            value = vals[0]
            if kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
                col = {"StudyInstanceUID": "study", "SeriesInstanceUID": "series", "SOPInstanceUID": "sop"}[kw]
                uids = [u.strip() for u in value.split("\\") if u.strip()]   # UID list matching (PS3.18)
                where.append(f"{own}.{col} IN ({','.join('?' * len(uids))})")
                params.extend(uids)
            elif kw == "Modality":
                where.append(f"{'r' if level != 'study' else own}.modality=?")
                params.append(value)
            elif kw == "StudyDate":
                if "-" in value:
                    lo, _, hi = value.partition("-")
                    if lo:
                        where.append("s.study_date >= ?")
                        params.append(lo)
                    if hi:
                        where.append("s.study_date <= ?")
                        params.append(hi)
                    where.append("s.study_date IS NOT NULL")
                else:
                    where.append("s.study_date=?")
                    params.append(value)
            elif kw == "PatientName" and q.fuzzy:
                toks = sorted(tokens(value))
                if not toks:
                    continue
                ors = " OR ".join("(token >= ? AND token < ?)" for _ in toks)
                where.append(f"s.study IN (SELECT study FROM hc_pn_tokens WHERE sid=? AND ({ors}))")
                params.append(sid)
                for t in toks:
                    params.extend([t, t + "\U0010ffff"])
            else:
                col = {"PatientName": "patient_name", "PatientID": "patient_id", "AccessionNumber": "accession",
                       "ReferringPhysicianName": "referring"}[kw]
                where.append(f"s.{col}=?")
                params.append(value)
        need_meta = level == "instance" and (q.all_fields or bool(q.fields and q.fields - set(INSTANCE_DEFAULT)))
        if level == "study":
            cols = "s.doc"
        elif level == "series":
            cols = "r.doc"
        else:
            cols = "i.meta" if need_meta else "i.qdoc"
        sql = (f"SELECT {cols} FROM {_table(level)} {own} {' '.join(joins)} WHERE {' AND '.join(where)} "
               f"ORDER BY {own}.id LIMIT ? OFFSET ?")
        params.extend([q.limit, q.offset])
        with self.db.lock:
            rows = self.db.conn.execute(sql, params).fetchall()
        return [self._result(level, row, q) for row in rows]

    def _result(self, level: str, row: tuple, q: Query) -> dict:
        doc = json.loads(row[0])
        wanted = {"study": STUDY_DEFAULT, "series": SERIES_DEFAULT, "instance": INSTANCE_DEFAULT}[level]
        if q.all_fields:
            out = {k: v for k, v in doc.items() if "BulkDataURI" not in v}
        else:
            keep = set(wanted) | (q.fields or set())
            out = {k: doc[k] for k in keep if k in doc}
        return dict(sorted(out.items()))


def _table(level: str) -> str:
    return {"study": "hc_studies", "series": "hc_series", "instance": "hc_instances"}[level]


def _chunks(seq: list, n: int):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]
