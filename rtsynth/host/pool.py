"""The rack's one voice pool: ``--polyphony`` voices across all its neural and basic
instruments.

The rack routes every MIDI message at the time it is pushed (in time order, live and from a
file); the pool follows the same messages and keeps one entry per voice it counts: the part
that plays it, channel, key, the sample it started at, and whether it is held (key down),
sustained (key up, pedal down) or released (since which sample). A note-on takes a free entry;
when all ``size`` are taken it steals, by the single engine's order (:func:`start_voices
<rtsynth.engine.bank.start_voices>`): a released voice first (the one released longest ago),
else the oldest held one, whichever instrument plays it. The steal is an event queued into the
victim's engine at the note-on's sample (:meth:`Engine.steal
<rtsynth.engine.block.Engine.steal>`): that voice moves to a fade slot and fades out over 4 ms,
as a voice the engine steals itself does.

Why by the MIDI alone: the pool decides from what the messages say, never from the rendered
state (a voice's level, or whether its release has ended), which a render knows only per block
-- 128 frames live, 8192 offline -- so the same file steals the same voices live and offline,
whatever the block. The engine's own steal ranks released voices by level; here the longest
released stands for the quietest (a release decays). A released voice counts until it is
stolen or until the engine surely has ended it (``max_release`` after its release, plus the
final fade): so the voices that sound are never more than the pool, and a steal of one that
has already ended is a no-op.

LV2 instruments are not in the pool: their voices are the plugin's (its own polyphony and
stealing); the rack can neither see them nor fade one out.

Messages that end voices, as the engine has them (:mod:`rtsynth.engine.channels`): note-off
(held on by the channel's sustain pedal, CC64), a note-on of the same key on the same channel
and instrument (the held voice is released), pedal up, all notes off (CC123, the pedal still
holds), all sound off (CC120: the channel's voices fade out now). An MPE zone's master channel
(1 or 16, after its MPE Configuration Message) holds its members' notes with its pedal too.
"""

from __future__ import annotations

FREE, HELD, SUSTAINED, RELEASED = 0, 1, 2, 3
#: beyond ``max_release``: the engine's end of a long release (a 50 ms fade from the frame
#: after it) and a hop, with room to spare
END_MARGIN_S = 0.1


class VoicePool:
    """``size`` voices across the rack's engine parts (see the module doc). Not thread-safe:
    the rack calls it from :meth:`Rack.push`, which has one producer.

    A message costs about the same whatever the size (the rack's push may run in the audio
    callback): the free entries are a stack, the held ones are found by (channel, key); only
    a note-on into a full pool, pedal up and all notes or sound off look at every entry (its steal: 3 us at 32
    voices, about 12 at 192). A released entry is let go when that look finds it past
    :attr:`hold` (the same as at the moment it passed: it matters only to a full pool)."""

    def __init__(self, size: int, sample_rate: int, max_release_s: float = 6.0):
        self.size = int(size)
        self.hold = int(round((max_release_s + END_MARGIN_S) * sample_rate))
        n = self.size
        self.part = [None] * n
        self.state = [FREE] * n
        self.ch = [0] * n
        self.key = [0] * n
        self.start = [0] * n
        self.released = [0] * n
        self.seq = [0] * n               # admission order (ties of the same sample)
        self._seq = 0
        #: steals decided (victims that still sounded or not)
        self.steals = 0
        self.reset()

    def reset(self) -> None:
        n = self.size
        for i in range(n):
            self.state[i] = FREE
            self.part[i] = None
        self.free = list(range(n - 1, -1, -1))     # pop() gives entry 0 first
        self.by_key: dict = {}                      # (ch, key) -> {entry: None}, held/sustained
        self._seq = 0
        self.pedal = [False] * 16
        self.zone_master = [False] * 16  # channels 1 and 16 after their MPE configuration
        self._rpn = [[127, 127] for _ in range(16)]
        self.steals = 0

    # ---------------------------------------------------------------- queries
    @property
    def counted(self) -> int:
        """Entries taken (a released one past :attr:`hold` is let go only when needed)."""
        return self.size - len(self.free)

    # ---------------------------------------------------------------- entries
    def _free(self, i: int) -> None:
        if self.state[i] == FREE:
            return
        if self.state[i] != RELEASED:
            self._unkey(i)
        self.state[i] = FREE
        self.part[i] = None
        self.free.append(i)

    def _unkey(self, i: int) -> None:
        k = (self.ch[i], self.key[i])
        d = self.by_key.get(k)
        if d is not None:
            d.pop(i, None)
            if not d:
                del self.by_key[k]

    def _release(self, i: int, when: int) -> None:
        self._unkey(i)
        self.state[i] = RELEASED
        self.released[i] = when

    def _victim(self) -> int:
        """The voice released longest ago (ties: the earliest admitted), else the oldest held
        or sustained one (the earliest admitted: admissions come in time order)."""
        st, rel, seq = self.state, self.released, self.seq
        r = h = -1
        for i in range(self.size):
            if st[i] == RELEASED:
                if r < 0 or rel[i] < rel[r] or (rel[i] == rel[r] and seq[i] < seq[r]):
                    r = i
            elif h < 0 or seq[i] < seq[h]:
                h = i
        return r if r >= 0 else h

    # ---------------------------------------------------------------- messages
    def note_on(self, when: int, part, ch: int, key: int):
        """A note-on for ``part``: returns the entry it steals as ``(part, ch, key, start)``,
        or None when a voice was free."""
        d = self.by_key.get((ch, key))
        if d:                            # the same key held on the same part and channel
            for i in [i for i in d if self.part[i] is part]:
                self._release(i, when)
        stolen = None
        if self.free:
            i = self.free.pop()
        else:
            i = self._victim()
            if self.state[i] != RELEASED or when - self.released[i] < self.hold:
                stolen = (self.part[i], self.ch[i], self.key[i], self.start[i])
                self.steals += 1
            self._free(i)
            self.free.pop()
        self._seq += 1
        self.seq[i] = self._seq
        self.state[i] = HELD
        self.part[i] = part
        self.ch[i] = ch
        self.key[i] = key
        self.start[i] = when
        self.by_key.setdefault((ch, key), {})[i] = None
        return stolen

    def _held_by_pedal(self, ch: int) -> bool:
        if self.pedal[ch]:
            return True
        for m in (0, 15):
            if m != ch and self.zone_master[m] and self.pedal[m]:
                return True
        return False

    def note_off(self, when: int, ch: int, key: int) -> None:
        """Key up on every instrument that played on the channel (the rack sends it to all);
        ``key`` < 0: every key of the channel (all notes off)."""
        if key < 0:
            src = [i for i in range(self.size) if self.state[i] == HELD and self.ch[i] == ch]
        else:
            src = self.by_key.get((ch, key))
            if not src:
                return
            src = [i for i in src if self.state[i] == HELD]
        pedal = self._held_by_pedal(ch)
        for i in src:
            if pedal:
                self.state[i] = SUSTAINED
            else:
                self._release(i, when)

    def control(self, when: int, ch: int, cc: int, value: int) -> None:
        if cc == 64:
            down = value >= 64
            self.pedal[ch] = down
            if not down:
                self._pedal_up(when, ch)
        elif cc == 123:
            self.note_off(when, ch, -1)
        elif cc == 120:
            for i in range(self.size):
                if self.ch[i] == ch:
                    self._free(i)
        elif ch in (0, 15) and cc in (100, 101, 6):
            rpn = self._rpn[ch]
            if cc == 101:
                rpn[0] = value
            elif cc == 100:
                rpn[1] = value
            elif rpn == [0, 6]:          # the MPE Configuration Message: a zone, or none
                self.zone_master[ch] = value > 0

    def _pedal_up(self, when: int, ch: int) -> None:
        chans = range(16) if ch in (0, 15) and self.zone_master[ch] else (ch,)
        for c in chans:
            if self._held_by_pedal(c):
                continue
            for i in range(self.size):
                if self.state[i] == SUSTAINED and self.ch[i] == c:
                    self._release(i, when)


__all__ = ["VoicePool"]
