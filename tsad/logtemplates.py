"""Log templates: message content → (template id, template text, parameters), mined with Drain.

Mining uses Drain3's core algorithm (`drain3.drain.Drain`: the fixed-depth prefix tree of He et
al., ICWS 2017), configured here in code (`MinerConfig`); Drain3's `TemplateMiner`, its .ini
files and its jsonpickle persistence are not used.

Tokens and masks. Content is split on whitespace; each token is masked on its own by the
config's regex masks, in order (a match becomes `<NAME>`, e.g. `10.0.0.1:22` → `<IP>`), so a
masked token stays aligned with the raw token it came from. A template is a tuple of tokens in
which `<*>` (a position Drain found variable) and tokens holding a `<NAME>` mask are *variable*;
the parameters of a line are its raw tokens at the variable positions of its template.

Lists. A run of consecutive tokens wholly masked by one of `list_masks` (`delete blk_1 blk_2 …
blk_90` → `delete <BLK>`) becomes one token, whose parameter is the run's raw tokens joined by a
space: lists of ids of any length share one template. Plain numbers (NUM) are not collapsed.

Post-merge (`consolidate`). Drain routes a line by its first tokens, so a cluster mined from a
line whose leading token later turned out variable can stay apart from its twin. `consolidate`
merges, among clusters of the same length, a cluster into an older one when the two differ only
at positions where at least one of them is variable, and they share at least `merge_min_shared`
of their positions as equal literal tokens. The merged id becomes an alias of the survivor
(`resolve`), so ids handed out earlier stay meaningful.

Ids are Drain's cluster ids (1, 2, …, in order of creation) and are kept by save/load.
`OTHER_ID` (0) is the "other" event of match-only mode (`match`): a line that matches no known
template.

State file (`save` / `load`): our own plain JSON, written atomically (core.jobs.atomic):
`{"format": "tsad-log-templates", "version": 1, "config": {...}, "next_id": n,
"clusters": [{"id", "tokens", "size"}], "aliases": {"merged id": survivor}}`. Loading validates
every field and rebuilds the miner by re-adding the clusters to a fresh Drain tree (nothing in the
file is executed or unpickled; mask regexes are compiled, nothing else). A damaged file is one
`UserError`. The rebuilt tree routes by the saved templates, so *learning* after a load can place
an edge-case line differently from an uninterrupted run; *matching* (`match`) depends only on the
clusters and is identical before and after.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from drain3.drain import Drain, LogCluster

from core.errors import UserError
from core.jobs.atomic import atomic_write_text
from core.jsontext import parse_json

STATE_FORMAT = "tsad-log-templates"
STATE_VERSION = 1
WILDCARD = "<*>"
OTHER_ID = 0
OTHER_TEMPLATE = "<other>"
MAX_TOKENS = 10_000  # a longer message is cut (the rest joins the last token's parameters) – see mask_tokens

# ------------------------------------------------------------------------------------- masks
# Whole or partial tokens; every pattern is applied to one whitespace-free token at a time.
_B = r"(?<![A-Za-z0-9])"  # not glued to a letter/digit on the left
_E = r"(?![A-Za-z0-9])"
MASKS: dict[str, str] = {
    "IP": _B + r"/?(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?" + _E,
    "HEX": _B + r"0x[0-9a-fA-F]+" + _E,
    "BLK": r"blk_-?\d+",
    "PATH": r"(?:(?<=^)|(?<=[=:(\[]))(?:/[^/\s,;:()\[\]]*){2,}",
    "CORE": r"core\.\d+",
    "HOST": _B + r"(?:[A-Za-z0-9-]+\.){2,}[A-Za-z][A-Za-z0-9-]*" + _E,
    "NUM": _B + r"[-+]?\d+(?:\.\d+)?" + _E,
}

_MASK_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,31}")


def _masks(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple((n, MASKS[n]) for n in names)


@dataclass(frozen=True)
class MinerConfig:
    depth: int = 4  # Drain's depth: root, length, depth-2 leading tokens
    sim_th: float = 0.4  # similarity a line needs to join a cluster
    max_children: int = 100  # children of one tree node before new tokens share the wildcard child
    masks: tuple[tuple[str, str], ...] = _masks("IP", "HEX", "BLK", "PATH", "NUM")
    parametrize_numeric_tokens: bool = True  # route tokens holding a digit through the wildcard child
    merge_min_shared: float = 0.5  # consolidate: share of positions that must be equal literals
    # a run of tokens wholly masked by one of these (`<BLK> <BLK> <BLK>`: a list of ids) is one token;
    # NUM is left out: runs of plain numbers are mostly fixed-arity fields (registers, coordinates)
    list_masks: tuple[str, ...] = ("BLK", "IP", "HEX", "PATH", "HOST", "CORE")

    def __post_init__(self) -> None:
        check = _check_config_fields(self)
        object.__setattr__(self, "masks", check)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["masks"] = [list(m) for m in self.masks]
        data["list_masks"] = list(self.list_masks)
        return data

    @classmethod
    def from_json(cls, data: Any) -> MinerConfig:
        if not isinstance(data, dict):
            raise UserError("config is not an object")
        known = {f.name for f in fields(cls)}
        extra = set(data) - known
        if extra:
            raise UserError(f"config has unknown keys {sorted(extra)}")
        masks = data.get("masks", [])
        if not isinstance(masks, list) or not all(isinstance(m, list) and len(m) == 2 for m in masks):
            raise UserError("config masks must be a list of [name, regex] pairs")
        lists = data.get("list_masks", [])
        if not isinstance(lists, list):
            raise UserError("config list_masks must be a list of mask names")
        return cls(**{**data, "masks": tuple(tuple(m) for m in masks), "list_masks": tuple(lists)})


def _check_config_fields(cfg: MinerConfig) -> tuple[tuple[str, str], ...]:
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not is_int(cfg.depth) or not 3 <= cfg.depth <= 32:
        raise UserError(f"template depth must be an integer from 3 to 32, not {cfg.depth!r}")
    if not isinstance(cfg.sim_th, (int, float)) or isinstance(cfg.sim_th, bool) or not 0 <= cfg.sim_th <= 1:
        raise UserError(f"template similarity threshold must be a number in [0, 1], not {cfg.sim_th!r}")
    if not is_int(cfg.max_children) or not 2 <= cfg.max_children <= 1_000_000:
        raise UserError(f"template max_children must be an integer from 2, not {cfg.max_children!r}")
    if not isinstance(cfg.parametrize_numeric_tokens, bool):
        raise UserError("parametrize_numeric_tokens must be true or false")
    lists = cfg.list_masks
    if not isinstance(lists, tuple) or not all(isinstance(n, str) and _MASK_NAME.fullmatch(n) for n in lists):
        raise UserError("list_masks must be a list of mask names")
    m = cfg.merge_min_shared
    if not isinstance(m, (int, float)) or isinstance(m, bool) or not (math.isfinite(m) and 0 <= m <= 1):
        raise UserError(f"merge_min_shared must be a number in [0, 1], not {m!r}")
    masks = []
    for item in cfg.masks:
        if not (isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            raise UserError("each mask must be a (name, regex) pair of strings")
        name, pattern = item
        if not _MASK_NAME.fullmatch(name):
            raise UserError(f"mask name {name!r} must be upper-case letters, digits, '_' (start with a letter)")
        try:
            rx = re.compile(pattern)
        except (re.error, OverflowError, RecursionError) as exc:
            raise UserError(f"mask {name} does not compile: {exc}") from None
        if rx.search("") is not None:
            raise UserError(f"mask {name} matches the empty string")
        masks.append((name, pattern))
    return tuple(masks)


# One documented setting per system (bench/logs_grouping.py measures them on Loghub's samples).
# Depth and similarity threshold are Drain's published per-dataset settings (the logparser
# benchmark: BGL, Thunderbird, HDFS, Apache 4 / 0.5; Linux 6 / 0.39; OpenSSH 5 / 0.6) except
# OpenSSH's threshold, 0.7 here: the only change a small grid (depth 4-6 x threshold 0.4-0.8, see
# bench/logs_grouping.json) justified, the lowest threshold of the plateau at Drain's depth.
# Masks follow the benchmark's per-dataset regexes (BGL core.N, HDFS blk_N and IP:port, OpenSSH
# IP and host names, IPs elsewhere), widened to the token mask library above (numbers, hex, paths).
FORMAT_CONFIGS: dict[str, MinerConfig] = {
    "bgl": MinerConfig(depth=4, sim_th=0.5, masks=_masks("CORE", "IP", "HEX", "PATH", "NUM")),
    "thunderbird": MinerConfig(depth=4, sim_th=0.5, masks=_masks("IP", "HEX", "PATH", "NUM")),
    "hdfs": MinerConfig(depth=4, sim_th=0.5, masks=_masks("BLK", "IP", "PATH", "NUM")),
    "openssh": MinerConfig(depth=5, sim_th=0.7, masks=_masks("IP", "HOST", "HEX", "PATH", "NUM")),
    "linux": MinerConfig(depth=6, sim_th=0.39, masks=_masks("IP", "HEX", "PATH", "NUM")),
    "apache": MinerConfig(depth=4, sim_th=0.5, masks=_masks("IP", "PATH", "NUM")),
}
FORMAT_CONFIGS["syslog"] = FORMAT_CONFIGS["openssh"]  # the generic syslog setting


def config_for(fmt: str) -> MinerConfig:
    """The documented setting for a log format (`MinerConfig()` for jsonl / regex / unknown)."""
    return FORMAT_CONFIGS.get(fmt, MinerConfig())


# ------------------------------------------------------------------------------------- events
@dataclass(frozen=True)
class TemplateEvent:
    template_id: int  # OTHER_ID when no known template matches (match-only mode)
    template: str
    parameters: tuple[str, ...] = ()
    new: bool = False  # learning: this line created the cluster; matching: no template matched


MASK_CACHE_SIZE = 100_000  # masked tokens remembered per miner (then forgotten at once: bounded memory)


def is_variable(token: str) -> bool:
    return token == WILDCARD or _VAR_IN_TOKEN.search(token) is not None


_VAR_IN_TOKEN = re.compile(r"<(?:\*|[A-Z][A-Z0-9_]{0,31})>")


class TemplateMiner:
    """Drain with token masks, post-merge, match-only mode and plain-JSON state (module docstring)."""

    def __init__(self, config: MinerConfig | None = None):
        self.config = config or MinerConfig()
        self._masks = [(name, re.compile(p)) for name, p in self.config.masks]
        self._list_tokens = frozenset(f"<{n}>" for n in self.config.list_masks)
        self.drain = self._new_drain()
        self.aliases: dict[int, int] = {}
        self._by_length: dict[int, list[int]] = {}
        self._mask_cache: dict[str, str] = {}  # token -> masked token (bounded: MASK_CACHE_SIZE)

    def _new_drain(self) -> Drain:
        return Drain(depth=self.config.depth, sim_th=self.config.sim_th, max_children=self.config.max_children,
                     max_clusters=None, param_str=WILDCARD,
                     parametrize_numeric_tokens=self.config.parametrize_numeric_tokens)

    # ------------------------------------------------------------------------------ tokens
    def mask_tokens(self, content: str) -> tuple[list[str], list[str]]:
        """(raw tokens, masked tokens), aligned one to one."""
        raw = content.split()
        if len(raw) > MAX_TOKENS:
            raw = raw[: MAX_TOKENS - 1] + [" ".join(raw[MAX_TOKENS - 1:])]
        masked: list[str] = []
        cache = self._mask_cache
        for tok in raw:
            hit = cache.get(tok)
            if hit is None:  # masking is a pure function of the token: most tokens repeat (fixed words)
                hit = tok
                for name, rx in self._masks:
                    hit = rx.sub(f"<{name}>", hit)
                if len(cache) >= MASK_CACHE_SIZE:
                    cache.clear()
                cache[tok] = hit
            masked.append(hit)
        if not self._list_tokens:
            return raw, masked
        # a run of the same whole-token mask (`<BLK> <BLK> <BLK>`) is one list parameter
        out_raw: list[str] = []
        out_masked: list[str] = []
        for tok, m in zip(raw, masked):
            if out_masked and m == out_masked[-1] and m in self._list_tokens:
                out_raw[-1] += " " + tok
            else:
                out_raw.append(tok)
                out_masked.append(m)
        return out_raw, out_masked

    @staticmethod
    def _params(template: tuple[str, ...], raw: list[str]) -> tuple[str, ...]:
        return tuple(r for t, r in zip(template, raw) if is_variable(t))

    # ------------------------------------------------------------------------------ learning
    def add(self, content: str) -> TemplateEvent:
        """Learn from one message: its cluster (created or updated) as a TemplateEvent."""
        raw, masked = self.mask_tokens(content)
        cluster, change = self.drain.add_log_message(" ".join(masked))
        if change == "cluster_created":
            self._by_length.setdefault(len(cluster.log_template_tokens), []).append(cluster.cluster_id)
        tokens = cluster.log_template_tokens
        return TemplateEvent(cluster.cluster_id, " ".join(tokens), self._params(tokens, raw),
                             change == "cluster_created")

    def add_all(self, contents: Iterable[str]) -> list[int]:
        """Learn from every message; return each one's template id *after* `consolidate()`."""
        ids = [self.add(c).template_id for c in contents]
        self.consolidate()
        return [self.resolve(i) for i in ids]

    def resolve(self, template_id: int) -> int:
        """The surviving id of a (possibly merged) template id."""
        seen = 0
        while template_id in self.aliases and seen < 1000:
            template_id = self.aliases[template_id]
            seen += 1
        return template_id

    # ------------------------------------------------------------------------------ post-merge
    def consolidate(self) -> int:
        """Merge clusters that differ only in variable positions (module docstring); return how
        many were merged away."""
        merged = 0
        for length, ids in list(self._by_length.items()):
            alive = sorted(i for i in ids if i in self.drain.id_to_cluster)
            changed = True
            while changed:
                changed = False
                for a_pos, a in enumerate(alive):
                    for b in alive[a_pos + 1:]:
                        ca, cb = self.drain.id_to_cluster[a], self.drain.id_to_cluster[b]
                        joined = self._join(ca.log_template_tokens, cb.log_template_tokens)
                        if joined is None:
                            continue
                        self._merge_into(ca, cb, joined)
                        alive.remove(b)
                        merged += 1
                        changed = True
                        break
                    if changed:
                        break
            self._by_length[length] = alive
        return merged

    def _join(self, ta: tuple[str, ...], tb: tuple[str, ...]) -> tuple[str, ...] | None:
        if not ta:
            return ta
        out, shared = [], 0
        for x, y in zip(ta, tb):
            if x == y:
                out.append(x)
                shared += 0 if is_variable(x) else 1
            elif is_variable(x) or is_variable(y):
                out.append(WILDCARD)
            else:
                return None
        if shared < self.config.merge_min_shared * len(ta):
            return None
        return tuple(out)

    def _merge_into(self, keep: LogCluster, gone: LogCluster, tokens: tuple[str, ...]) -> None:
        keep.log_template_tokens = tokens
        keep.size += gone.size
        del self.drain.id_to_cluster[gone.cluster_id]
        self.aliases[gone.cluster_id] = keep.cluster_id
        for target, alias in list(self.aliases.items()):
            if alias == gone.cluster_id:
                self.aliases[target] = keep.cluster_id
        # lines routed to the merged cluster's leaves now meet the survivor there
        stack = [self.drain.root_node]
        while stack:
            node = stack.pop()
            if gone.cluster_id in node.cluster_ids:
                node.cluster_ids = [keep.cluster_id if c == gone.cluster_id else c for c in node.cluster_ids]
                node.cluster_ids = list(dict.fromkeys(node.cluster_ids))
            stack.extend(node.key_to_child_node.values())

    # ------------------------------------------------------------------------------ matching
    def match(self, content: str) -> TemplateEvent:
        """Match-only (scoring): the known template that covers the message, learning nothing.
        Among the templates of the same length whose literal tokens all equal the masked message's,
        the one with the fewest variable positions wins (ties: the lowest id); none covering it
        gives `OTHER_ID` with `new=True`."""
        raw, masked = self.mask_tokens(content)
        cid = self._covering(masked)
        if cid == OTHER_ID:
            return TemplateEvent(OTHER_ID, OTHER_TEMPLATE, tuple(raw), True)
        tokens = self.drain.id_to_cluster[cid].log_template_tokens
        return TemplateEvent(cid, " ".join(tokens), self._params(tokens, raw), False)

    def match_id(self, content: str) -> int:
        """`match(content).template_id` without building the template text and parameters (the
        monitor's per-line path needs only the id)."""
        return self._covering(self.mask_tokens(content)[1])

    def _covering(self, masked: list[str]) -> int:
        """The id of the known template covering the masked tokens (see `match`), or OTHER_ID."""
        best: tuple[int, int] | None = None
        for cid in self._by_length.get(len(masked), ()):
            cluster = self.drain.id_to_cluster.get(cid)
            if cluster is None:
                continue
            wild = 0
            for t, m in zip(cluster.log_template_tokens, masked):
                if t == WILDCARD:
                    wild += 1
                elif t != m:
                    break
            else:
                if best is None or (wild, cid) < best:
                    best = (wild, cid)
        return OTHER_ID if best is None else best[1]

    # ------------------------------------------------------------------------------ views
    def templates(self) -> dict[int, str]:
        return {cid: c.get_template() for cid, c in sorted(self.drain.id_to_cluster.items())}

    def __len__(self) -> int:
        return len(self.drain.id_to_cluster)

    # ------------------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        clusters = [{"id": cid, "tokens": list(c.log_template_tokens), "size": c.size}
                    for cid, c in sorted(self.drain.id_to_cluster.items())]
        return {"format": STATE_FORMAT, "version": STATE_VERSION, "config": self.config.to_json(),
                "next_id": self.drain.clusters_counter + 1, "clusters": clusters,
                "aliases": {str(k): v for k, v in sorted(self.aliases.items())}}

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.state(), ensure_ascii=False, separators=(",", ":")) + "\n")

    @classmethod
    def from_state(cls, state: Any, what: str = "template state") -> TemplateMiner:
        try:
            return cls._from_state(state)
        except UserError as exc:
            raise UserError(f"{what}: {exc}") from None

    @classmethod
    def _from_state(cls, state: Any) -> TemplateMiner:
        if not isinstance(state, dict):
            raise UserError("not a JSON object")
        if state.get("format") != STATE_FORMAT:
            raise UserError(f"not a {STATE_FORMAT} file")
        if state.get("version") != STATE_VERSION:
            raise UserError(f"unsupported version {state.get('version')!r} (this reader knows {STATE_VERSION})")
        miner = cls(MinerConfig.from_json(state.get("config")))
        clusters, next_id, aliases = state.get("clusters"), state.get("next_id"), state.get("aliases", {})
        if not isinstance(clusters, list):
            raise UserError("clusters must be a list")
        if not isinstance(next_id, int) or isinstance(next_id, bool) or next_id < 1:
            raise UserError("next_id must be a positive integer")
        seen: set[int] = set()
        for k, item in enumerate(clusters):
            if not isinstance(item, dict) or set(item) != {"id", "tokens", "size"}:
                raise UserError(f"cluster #{k} must be an object with id, tokens, size")
            cid, tokens, size = item["id"], item["tokens"], item["size"]
            if not isinstance(cid, int) or isinstance(cid, bool) or not 1 <= cid < next_id or cid in seen:
                raise UserError(f"cluster #{k}: id must be a unique integer from 1 to next_id - 1")
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise UserError(f"cluster {cid}: size must be a positive integer")
            if (not isinstance(tokens, list) or len(tokens) > MAX_TOKENS
                    or not all(isinstance(t, str) and t and t.split() == [t] for t in tokens)):
                raise UserError(f"cluster {cid}: tokens must be a list of non-empty strings without spaces")
            seen.add(cid)
        for item in sorted(clusters, key=lambda c: c["id"]):  # id order: the same tree from any file order
            cluster = LogCluster(item["tokens"], item["id"])
            cluster.size = item["size"]
            miner.drain.id_to_cluster[cluster.cluster_id] = cluster
            miner.drain.add_seq_to_prefix_tree(miner.drain.root_node, cluster)
            miner._by_length.setdefault(len(cluster.log_template_tokens), []).append(cluster.cluster_id)
        miner.drain.clusters_counter = next_id - 1
        if not isinstance(aliases, dict):
            raise UserError("aliases must be an object")
        for key, value in aliases.items():
            if not re.fullmatch(r"[1-9]\d{0,17}", key) or int(key) in seen or int(key) >= next_id:
                raise UserError(f"alias {key!r} must be the id of a merged (absent) cluster")
            if not isinstance(value, int) or isinstance(value, bool) or value not in seen:
                raise UserError(f"alias {key} must point at a kept cluster")
            miner.aliases[int(key)] = value
        for ids in miner._by_length.values():
            ids.sort()
        return miner

    @classmethod
    def load(cls, path: str | Path) -> TemplateMiner:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read template state {path}: {exc.strerror or exc}") from None
        return cls.from_state(parse_json(data, f"template state {path}"), f"template state {path}")
