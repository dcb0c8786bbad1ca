"""``rtsynth bench``: every row for every synth, in one run, on one JACK server per block size."""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rtsynth.jackserver import JackServer, default_server_name, server_running
from rtsynth.testing.jackrig import JackRig

from . import measure as M
from .synths import LiveSynth, SynthSpec, fluidsynth_spec, rtsynth_spec

MAIN_BLOCK = 128
#: the dropout row holds its voices in rounds of at most this long, the synths taking turns
LOAD_ROUND_S = 20.0
#: the capacity ramp: voices dealt over 15 channels (measure.held_stream's ``spread``), steps of
#: 32 from 64 up to 256 (FluidSynth's default polyphony)
CAPACITY_STEPS = [8, 16, 32, 64, 96, 128, 160, 192, 224, 256]


@dataclass
class BenchConfig:
    quick: bool = False
    instruments: list[str] = field(default_factory=lambda: ["basic"])
    peer: bool = True
    blocks: list[int] | None = None          # default: [64, 128, 256], quick: [128]
    notes: int | None = None                 # latency notes per block (>= 200 in full)
    load_seconds: float | None = None        # default 60, quick 5
    load_voices: int = 32
    capacity_steps: list[int] | None = None
    capacity_seconds: float | None = None
    capacity_retry: bool | None = None       # confirm a failing step once (default on)
    render: bool = True
    render_repeat: int | None = None         # a longer file too (full: the chorale x8)
    render_runs: int | None = None           # runs per file and synth, interleaved (median)
    render_multipart: float | None = None    # a 4-part file of 4 channels, this many seconds
                                             # (full: 336, quick: none)
    rows: tuple[str, ...] = ("startup", "felt", "latency", "load", "capacity", "render")
    felt_repeats: int | None = None          # each key of 60-83 this often (default 2, quick 1)
    private_server: bool = False             # always start our own, even if one runs
    python: str = sys.executable
    rtsynth_args: list[str] = field(default_factory=list)   # every `rtsynth play` gets these
    variants: list[list[str]] | None = None  # each instrument once per variant (play options)
    synths: list[SynthSpec] | None = None    # instead of rtsynth instruments + FluidSynth
    workdir: str | None = None
    sample_rate: int = 48000
    log: object = None                       # callable(str) for progress lines

    def resolve(self) -> "BenchConfig":
        q = self.quick
        self.blocks = self.blocks or ([MAIN_BLOCK] if q else [64, 128, 256])
        self.notes = self.notes or (60 if q else 200)
        self.load_seconds = self.load_seconds or (5.0 if q else 60.0)
        self.capacity_steps = self.capacity_steps or (
            [16, 32, 64] if q else CAPACITY_STEPS)
        self.capacity_seconds = self.capacity_seconds or (2.0 if q else 5.0)
        if self.capacity_retry is None:
            # a shared VM stalls now and then (server-wide xruns): a step fails only when a
            # second try fails too
            self.capacity_retry = True
        if self.render_repeat is None:
            self.render_repeat = 1 if q else 8
        if self.felt_repeats is None:
            self.felt_repeats = 1 if q else 2
        if self.render_runs is None:
            self.render_runs = 1 if q else 3
        if self.render_multipart is None:
            self.render_multipart = 0.0 if q else 336.0
        return self


def default_synths(cfg: BenchConfig) -> list[SynthSpec]:
    out = []
    for inst in cfg.instruments:
        bb = _backbone(inst)
        for var in cfg.variants or [[]]:
            args = [*cfg.rtsynth_args, *var]
            label = (f"rtsynth {inst}" + (f" ({bb})" if bb else "")
                     + (f" [{' '.join(var) or 'as is'}]" if cfg.variants else ""))
            out.append(rtsynth_spec(inst, python=cfg.python, label=label,
                                    extra=["--no-hw-midi", *args],
                                    voices_args=["--polyphony", "{voices}"]))
    if cfg.peer:
        try:
            out.append(fluidsynth_spec())
        except FileNotFoundError as e:
            if cfg.log:
                cfg.log(f"peer skipped: {e}")
    return out


def _backbone(inst: str) -> str | None:
    """The backbone named in a model folder's config.json (None for basic or unknown)."""
    import json
    try:
        from rtsynth.instruments import model_folder
        p = model_folder(inst)
        arch = json.loads((p / "config.json").read_text()).get("architecture", {})
        return arch.get("backbone")
    except Exception:  # noqa: BLE001
        return None


def _play_args(spec: SynthSpec) -> list[str]:
    """The options after `play` that the bench adds to its fixed ones (what makes a variant)."""
    cmd = spec.cmd
    i = cmd.index("{stats}") + 1 if "{stats}" in cmd else len(cmd)
    return [c for c in cmd[i:] if c != "--no-hw-midi"]


def _dry_args(spec: SynthSpec) -> list[str]:
    """Arguments that turn reverb off, for latency (a tail would hide the next onset)."""
    return {"rtsynth": ["--reverb", "0"], "fluidsynth": ["-R", "0", "-C", "0"]}.get(spec.kind, [])


def _with_args(spec: SynthSpec, extra: list[str]) -> SynthSpec:
    import dataclasses
    if not extra:
        return spec
    cmd = list(spec.cmd)
    cmd = cmd[:-1] + extra + cmd[-1:] if spec.kind == "fluidsynth" else cmd + extra
    return dataclasses.replace(spec, cmd=cmd)


def _err_line(e: BaseException) -> str:
    """The exception's first line and the last lines of any process output it carries."""
    s = [l for l in str(e).strip().splitlines() if l.strip()]
    if len(s) > 4:
        s = s[:1] + ["..."] + s[-3:]
    return f"{type(e).__name__}: " + " | ".join(s)


def median_run(rows: list[dict]) -> dict:
    """The run of median speed among ``rows`` (one file, one synth), with every run's speed
    under ``runs_x``; the first error if no run succeeded."""
    ok = sorted((r for r in rows if r.get("x_realtime")), key=lambda r: r["x_realtime"])
    if not ok:
        return rows[0]
    row = dict(ok[(len(ok) - 1) // 2])
    row["runs_x"] = [r.get("x_realtime") for r in rows]
    return row


def _compile_package(log) -> None:
    """The package's bytecode written, as ``setup.sh`` leaves it: start-up and render rows time
    the program a user runs, not the compiling of modules edited since (with
    PYTHONDONTWRITEBYTECODE set, a stale .pyc is compiled again in every run: 0.3 s of a
    start-up measured here)."""
    import compileall
    pkg = Path(__file__).resolve().parents[1]
    try:
        compileall.compile_dir(str(pkg), quiet=2)
    except OSError as e:                    # a read-only install: nothing to write
        log(f"bytecode not written ({e})")


def run_bench(cfg: BenchConfig) -> dict:
    cfg.resolve()
    log = cfg.log or (lambda s: None)
    specs = cfg.synths if cfg.synths is not None else default_synths(cfg)
    res = {"meta": {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "cpu": _cpu_name(), "python": platform.python_version(), "quick": cfg.quick,
        "blocks": cfg.blocks, "sample_rate": cfg.sample_rate,
        "argv": sys.argv[1:], "play_args": list(cfg.rtsynth_args),
        "variants": cfg.variants},
        "synths": {s.label: {"kind": s.kind, "latency": {}, "errors": [],
                             **({"play_args": _play_args(s)} if s.kind == "rtsynth" else {})}
                   for s in specs}}
    t_all = time.monotonic()
    _compile_package(log)

    use_running = (not cfg.private_server) and server_running()
    if use_running:
        res["meta"]["server"] = f"running server {default_server_name()!r}"
        log(f"using the running JACK server {default_server_name()!r}")
        _run_on_server(cfg, specs, res, server=None, env=dict(os.environ), log=log,
                       servername=None, blocks=None)
    else:
        res["meta"]["server"] = "private jackd -d dummy per block size"
        for block in cfg.blocks:
            log(f"jackd -d dummy -r {cfg.sample_rate} -p {block}")
            srv = JackServer(rate=cfg.sample_rate, period=block)
            try:
                srv.start()
                _run_on_server(cfg, specs, res, server=srv, env=srv.env, log=log,
                               servername=srv.name, blocks=[block])
            finally:
                srv.cleanup()

    if cfg.render and "render" in cfg.rows:
        files = [M.chorale_midi()]
        if cfg.render_repeat and cfg.render_repeat > 1:
            files.append(M.chorale_midi(repeat=cfg.render_repeat))
        if cfg.render_multipart:
            # the 4 parts on 4 channels with program changes (FluidSynth plays the 5 GM
            # programs of the shipped models; rtsynth -i NAME plays every part with NAME)
            while len(files) < 2:
                files.append(files[0])        # the multi-part file is always the third row
            files.append(M.multipart_midi(cfg.render_multipart))
        # each file rendered render_runs times by each synth, the synths taking turns (a busy
        # minute on a shared machine falls on all of them alike); the row is the median run
        rsynths = [s for s in specs if s.kind in ("rtsynth", "fluidsynth")]
        if set(cfg.rows) - {"render"}:
            time.sleep(2.0)   # the live rows' servers and clients finish exiting first
        runs = {s.label: [[] for _ in files] for s in rsynths}
        for k in range(max(1, int(cfg.render_runs or 1))):
            for i, f in enumerate(files):
                for s in rsynths:
                    log(f"render {f.name} (run {k + 1}): {s.label}")
                    try:
                        inst = s.cmd[s.cmd.index("-i") + 1] if s.kind == "rtsynth" else "fs"
                        runs[s.label][i].append(M.measure_render(
                            s.kind, f, instrument=inst, python=cfg.python,
                            workdir=cfg.workdir, sample_rate=cfg.sample_rate))
                    except Exception as e:  # noqa: BLE001 - a row fails, the bench goes on
                        runs[s.label][i].append({"file": f.name, "error": _err_line(e)})
        for s in rsynths:
            res["synths"][s.label]["render"] = [median_run(r) for r in runs[s.label]]
    res["meta"]["bench_s"] = time.monotonic() - t_all
    res["ratios"] = ratios(res)
    res["targets"] = targets(res)
    return res


def _open_rig(servername, max_seconds: float, log, tries: int = 3) -> JackRig:
    """The bench's rig on the server, opened again (up to ``tries`` times, 0.5 s apart) when
    the server does not answer the client's opening: a loaded machine, or a server stopped
    for a moment, fails it now and then (``JackOpenError ... server_error``, seen under
    jack_chaos on a server just started)."""
    for k in range(tries):
        try:
            return JackRig(n_inputs=2, servername=servername, name=f"bench{os.getpid()}",
                           max_seconds=max_seconds)
        except Exception as e:  # noqa: BLE001 - jack.JackOpenError
            if k == tries - 1:
                raise
            log(f"rig not opened ({_err_line(e)}): once more")
            time.sleep(0.5)
    raise AssertionError("unreachable")


def _run_on_server(cfg, specs, res, server, env, log, servername, blocks):
    with _open_rig(servername, max(90.0, cfg.load_seconds + 5, (cfg.notes + 4) * 0.1 + 5),
                   log) as rig:
        block = rig.blocksize
        if blocks is None:
            res["meta"]["blocks"] = [block]
        main = block == MAIN_BLOCK or (blocks is None) or len(cfg.blocks) == 1
        for spec in specs:
            r = res["synths"][spec.label]
            # start-up + latency, in one process, dry
            if "latency" in cfg.rows or "startup" in cfg.rows or "felt" in cfg.rows:
                for attempt in (1, 2):  # a synth that fails to start gets one more chance
                    err = _startup_latency(cfg, spec, env, rig, block, main, r, log)
                    if err is None:
                        break
                    msg = f"[{block}] start-up/latency{' (retried)' if attempt == 2 else ''}: {err}"
                    log(f"  failed: {err}")
                    if attempt == 2:
                        r["errors"].append(msg)
                    else:
                        r.setdefault("retries", []).append(msg)
        if main and "load" in cfg.rows:
            # in rounds of at most LOAD_ROUND_S, the synths taking turns; the rounds added up
            n = max(1, math.ceil(cfg.load_seconds / LOAD_ROUND_S))
            secs = cfg.load_seconds / n
            parts: dict = {s.label: [] for s in specs}
            for i in range(n):
                for spec in specs:
                    r = res["synths"][spec.label]
                    if any(e.startswith("load:") for e in r["errors"]):
                        continue
                    log(f"[{block}] dropouts: {cfg.load_voices} voices for {secs:g} s (round "
                        f"{i + 1} of {n}), bend + CC: {spec.label}")
                    try:
                        parts[spec.label].append(_held_run(spec, env, rig, block, server,
                                                           cfg.load_voices, secs, cfg.workdir))
                    except Exception as e:  # noqa: BLE001
                        r["errors"].append(f"load: {_err_line(e)}")
                        log(f"  failed: {_err_line(e)}")
            for spec in specs:
                if parts[spec.label]:
                    res["synths"][spec.label]["load"] = M.add_held(parts[spec.label])
        if main and "capacity" in cfg.rows:
            # step by step, the synths taking turns at each step (a busy minute of a shared
            # machine falls on all of them alike, not on whichever ramp ran then)
            caps = _capacity(cfg, specs, env, rig, block, server, log,
                             [res["synths"][s.label] for s in specs])
            for spec, cap in zip(specs, caps):
                res["synths"][spec.label]["capacity"] = cap


def _startup_latency(cfg, spec, env, rig, block, main, r, log) -> str | None:
    """Start-up, then latency, in one process, dry. Returns an error line or None."""
    dry = _with_args(spec, _dry_args(spec))
    live = LiveSynth(dry, env, rig, block, workdir=cfg.workdir)
    try:
        log(f"[{block}] start-up: {spec.label}")
        st = M.measure_startup(live, timeout=120.0,
                               program=M.FELT_PROGRAM if spec.kind == "fluidsynth" else None)
        if main or "startup" not in r:
            r["startup"] = dict(st, block=block)
        if "felt" in cfg.rows:
            log(f"[{block}] felt latency, notes 60-83 x{cfg.felt_repeats}: {spec.label}")
            r.setdefault("felt", {})[str(block)] = M.measure_felt_latency(
                live, repeats=cfg.felt_repeats,
                program=M.FELT_PROGRAM if spec.kind == "fluidsynth" else None)
        if "latency" in cfg.rows:
            log(f"[{block}] latency, {cfg.notes} notes: {spec.label}")
            spacing = max(4800, 12 * block)
            r["latency"][str(block)] = M.measure_latency(
                live, n_notes=cfg.notes, spacing=spacing, length=min(1920, spacing // 2))
    except Exception as e:  # noqa: BLE001 - a row fails, the bench goes on
        return _err_line(e)
    finally:
        live.stop()
        if live.stats:
            r.setdefault("play_stats", {})[str(block)] = _brief_stats(live.stats)
    return None


def _held_run(spec, env, rig, block, server, k, seconds, workdir, spread=False) -> dict:
    live = LiveSynth(spec, env, rig, block, voices=max(k, 32), workdir=workdir)
    with live:
        row = M.measure_held(live, server, k, seconds, spread=spread)
    return M.finish_held(row, live.stats)


def _capacity_step(cfg, spec, env, rig, block, server, log, r, k) -> dict:
    """One step of the ramp: ``k`` voices held, tried again once when it drops out (up to
    :data:`XRUN_ONLY_TRIES` times while its dropouts are blamed xruns only; the failed tries'
    counters under ``earlier``), started once more when the synth fails to start."""
    tries = 2 if cfg.capacity_retry else 1
    row = None
    earlier = []
    attempt = failed_starts = 0
    while attempt < tries:
        log(f"[{block}] capacity {k} voices{' (again)' if attempt else ''}: {spec.label}")
        try:
            row = _held_run(spec, env, rig, block, server, k, cfg.capacity_seconds,
                            cfg.workdir, spread=True)
        except Exception as e:  # noqa: BLE001
            # a synth that did not start or stop (its JACK client not opened on a loaded
            # machine, seen under jack_chaos) measured nothing: started once more, then an error
            failed_starts += 1
            if failed_starts == 1:
                r.setdefault("retries", []).append(f"capacity {k}: {_err_line(e)}")
                log(f"  failed, once more: {_err_line(e)}")
                continue
            row = {"voices": k, "error": _err_line(e), "dropouts": None}
            r["errors"].append(f"capacity {k}: {_err_line(e)}")
            break
        attempt += 1
        row["attempt"] = attempt
        if earlier:
            row["earlier"] = earlier
        if row["dropouts"] == 0:
            break
        # what the failed try saw, so that a step passed on its second try says why the first
        # failed
        earlier = earlier + [{x: row.get(x) for x in STEP_SUMMARY}]
        if cfg.capacity_retry and _xruns_only(row):
            # its only dropouts were xruns the server blamed on it alone: the log cannot tell
            # a synth too slow for the step from one a loaded machine did not run in time
            # (seen: a delay client at 1% of the period blamed once in a 1.5 s try, while
            # other servers' real-time threads held both cores); a synth too slow is blamed
            # in every try, so such a try is taken again, up to XRUN_ONLY_TRIES in all
            tries = min(max(tries, attempt + 1), XRUN_ONLY_TRIES)
    return row


#: tries of a capacity step whose failed tries saw nothing but blamed xruns
XRUN_ONLY_TRIES = 4


def _xruns_only(row: dict) -> bool:
    """A failed held run whose dropouts are all xruns blamed on the synth: no underrun of its
    own, no silence its underruns do not account for."""
    own = row.get("own_underruns", row.get("underruns")) or 0
    return own == 0 and (row.get("gaps") or 0) <= (row.get("underruns") or 0)


#: a failed capacity try's counters, kept in the step's row (``earlier``)
STEP_SUMMARY = ("dropouts", "dropouts_any", "underruns", "own_underruns", "client_xruns",
                "client_xruns_shared", "gaps", "server_xruns", "rig_xruns", "unrecorded_frames")


def _capacity(cfg, specs, env, rig, block, server, log, rows) -> list[dict]:
    """The capacity ramp of every synth, the synths taking turns at each step; each stops at
    its first step that fails twice."""
    state = [{"steps": [], "best": 0, "failed_at": None} for _ in specs]
    for k in cfg.capacity_steps:
        for spec, r, st in zip(specs, rows, state):
            if st["failed_at"] is not None:
                continue
            row = _capacity_step(cfg, spec, env, rig, block, server, log, r, k)
            st["steps"].append(row)
            if row.get("dropouts") == 0:
                st["best"] = k
            else:
                st["failed_at"] = k
    return [{"voices": st["best"], "first_failure": st["failed_at"], "block": block,
             "seconds": cfg.capacity_seconds, "steps": st["steps"],
             "tested_up_to": cfg.capacity_steps[-1]} for st in state]


def _brief_stats(st: dict) -> dict:
    """The counters, and the first rows of the latency policy's trace (why sync left the
    callback, and when it came back), without the per-block lists."""
    out = {k: v for k, v in st.items() if not isinstance(v, list)}
    if st.get("policy_trace"):
        out["policy_trace"] = st["policy_trace"][:64]
    return out


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# -- ratios --------------------------------------------------------------------------------------

def _get(d, *path):
    for p in path:
        if d is None:
            return None
        if isinstance(d, list):
            d = d[p] if isinstance(p, int) and len(d) > p else None
        else:
            d = d.get(p)
    return d


METRICS = [
    # key, label, path (block "{b}" filled in), unit, better ("lower"/"higher")
    ("felt_median_ms", "felt latency median (2% of peak)", ("felt", "{b}", "median_ms"), "ms",
     "lower"),
    ("felt_p99_ms", "felt latency p99", ("felt", "{b}", "p99_ms"), "ms", "lower"),
    ("latency_median_ms", "latency median", ("latency", "{b}", "median_ms"), "ms", "lower"),
    ("latency_p99_ms", "latency p99", ("latency", "{b}", "p99_ms"), "ms", "lower"),
    ("latency_max_ms", "latency max", ("latency", "{b}", "max_ms"), "ms", "lower"),
    ("latency_jitter_ms", "latency jitter (max-min)", ("latency", "{b}", "jitter_ms"), "ms",
     "lower"),
    ("dropouts", "dropouts under load (blamed on it)", ("load", "dropouts"), "", "lower"),
    ("dropouts_any", "  dropouts, any cause", ("load", "dropouts_any"), "", "lower"),
    ("underruns", "  underruns (own counter)", ("load", "underruns"), "", "lower"),
    ("own_underruns", "  of which its own (not next to a server xrun)", ("load", "own_underruns"),
     "", "lower"),
    ("late_blocks", "  of which late blocks (sync)", ("load", "late_blocks"), "", "lower"),
    ("client_xruns", "  JACK xruns blamed on it", ("load", "client_xruns"), "", "lower"),
    ("client_xruns_shared", "  JACK xruns it shared with a late machine",
     ("load", "client_xruns_shared"), "", "lower"),
    ("gaps", "  silent gaps in its output", ("load", "gaps"), "", "lower"),
    ("server_xruns", "  server xruns, any cause", ("load", "server_xruns"), "", "lower"),
    ("capacity", "polyphony capacity", ("capacity", "voices"), "voices", "higher"),
    ("render_x", "offline render speed", ("render", 0, "x_realtime"), "x RT", "higher"),
    ("render_long_x", "offline render speed, long", ("render", 1, "x_realtime"), "x RT",
     "higher"),
    ("render_multi_x", "offline render speed, 4 parts on 4 channels", ("render", 2,
                                                                       "x_realtime"),
     "x RT", "higher"),
    ("startup_s", "start-up to first sound", ("startup", "first_sound_s"), "s", "lower"),
]


#: rows measured at every block size
PER_BLOCK = ("latency", "felt")


def metric(synth_row: dict, path, block: int) -> float | None:
    p = tuple(str(block) if x == "{b}" else x for x in path)
    v = _get(synth_row, *p)
    return float(v) if isinstance(v, (int, float)) else None


def ratios(res: dict) -> dict:
    """rtsynth / FluidSynth for every metric (None where either is missing, the peer's is <= 0
    or ours is < 0), and for latencies also the difference in ms (``KEY_minus_peer``)."""
    peer = next((k for k, v in res["synths"].items() if v["kind"] == "fluidsynth"), None)
    out = {}
    if peer is None:
        return out
    blocks = res["meta"]["blocks"]
    b = MAIN_BLOCK if MAIN_BLOCK in blocks else blocks[0]
    for label, row in res["synths"].items():
        if label == peer:
            continue
        rr = {}
        for key, _, path, _, _ in METRICS:
            a, f = metric(row, path, b), metric(res["synths"][peer], path, b)
            ok = a is not None and f is not None and f > 0 and a >= 0
            rr[key] = (a / f) if ok else None
            if path[0] in PER_BLOCK and a is not None and f is not None:
                # latencies can be <= 0 (FluidSynth sounds from the start of the block an event
                # arrives in): the difference is the meaningful comparison
                rr[key + "_minus_peer"] = a - f
        out[f"{label} / {peer}"] = rr
    return out


def targets(res: dict) -> list[dict]:
    """The issue's targets, checked for every rtsynth synth against the peer of the same run."""
    peer = next((k for k, v in res["synths"].items() if v["kind"] == "fluidsynth"), None)
    blocks = res["meta"]["blocks"]
    b = MAIN_BLOCK if MAIN_BLOCK in blocks else blocks[0]
    bud = 1000.0 * b / res["meta"].get("sample_rate", 48000)
    out = []
    for label, row in res["synths"].items():
        if row["kind"] != "rtsynth":
            continue
        p99 = metric(row, ("latency", "{b}", "p99_ms"), b)
        jit = metric(row, ("latency", "{b}", "jitter_ms"), b)
        drop = metric(row, ("load", "dropouts"), b)
        cap = metric(row, ("capacity", "voices"), b)
        rx = metric(row, ("render", 0, "x_realtime"), b)
        fp99 = metric(res["synths"][peer], ("latency", "{b}", "p99_ms"), b) if peer else None
        frx = metric(res["synths"][peer], ("render", 0, "x_realtime"), b) if peer else None

        def add(name, value, ok):
            if value is None:  # the row was not run
                return
            out.append({"synth": label, "target": name, "value": value,
                        "ok": None if ok is None else bool(ok)})
        add(f"latency p99 <= FluidSynth p99 + one block ({bud:.2f} ms) @{b}", p99,
            None if p99 is None or fp99 is None else p99 <= fp99 + bud)
        add(f"latency jitter < 1 ms @{b}", jit, None if jit is None else jit < 1.0)
        load = row.get("load") or {}
        add(f"zero dropouts holding {load.get('voices', '?')} voices for "
            f"{load.get('seconds', '?')} s @{b}", drop, None if drop is None else drop == 0)
        tested = (row.get("capacity") or {}).get("tested_up_to")
        add("capacity >= 64 voices", cap,
            None if cap is None or (tested is not None and tested < 64) else cap >= 64)
        add("offline render faster than FluidSynth (same file)", rx,
            None if rx is None or frx is None else rx > frx)
    return out
