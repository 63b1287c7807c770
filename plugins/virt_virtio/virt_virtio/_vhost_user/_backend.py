"""The vhost-user back-end: one front-end connection served with one virtio device model.

One thread runs :meth:`VhostUserBackend.serve`: it reads front-end requests from the socket
and kicks from the kick eventfds, and calls the model (``activate``/``kick``/``reset``) from
that thread; the model signals used buffers through the call eventfds.  Because a request is
only read between two model calls, a block write the model started is finished before the
back-end notices that the front-end went away.

Errors.  A broken byte stream (:class:`VhostUserProtocolError`) ends the session.  A request
that cannot be carried out (:class:`VhostUserRequestError`) gets the failure answer (a non-zero
u64) when the front-end asked for one (REPLY_ACK and ``need_reply``); otherwise the session
ends, so that a front-end waiting for something never waits forever.  Each case is one log
line.  Whatever ends the session, the model is reset and every mapping and descriptor is
released.
"""

from __future__ import annotations

import enum
import logging
import os
import selectors
import socket
from collections.abc import Callable
from dataclasses import dataclass

from .. import _features as feat
from .._device_queue import DeviceQueue
from .._errors import VirtqueueError
from .._model import VirtioDeviceModel
from ._channel import Channel, Message
from ._errors import VhostUserError, VhostUserProtocolError, VhostUserRequestError
from ._host import VhostUserHost
from ._memory import MemoryTable
from ._protocol import (
    F_PROTOCOL_FEATURES,
    U64,
    VRING_INDEX_MASK,
    VRING_NOFD_MASK,
    VRING_STATE,
    ProtocolFeature,
    Request,
    decode_addr,
    decode_config,
    decode_memory_table,
    decode_state,
    decode_u64,
    encode_reply,
)
from ._vring import Vring, check_event_fd

log = logging.getLogger("virt_virtio.vhost_user")

_REPLYING = frozenset({Request.GET_FEATURES, Request.GET_PROTOCOL_FEATURES,
                       Request.GET_VRING_BASE, Request.GET_QUEUE_NUM, Request.GET_CONFIG})
"""Requests whose answer is their reply (never an extra REPLY_ACK u64)."""


class SessionEnd(enum.Enum):
    """How a session ended."""

    DISCONNECTED = "disconnected"   # the front-end closed while no ring was running
    VANISHED = "vanished"           # the front-end closed while rings were running
    STOPPED = "stopped"             # stop() (a signal in the command)
    FAILED = "failed"               # a protocol error or a refused request ended it


@dataclass(frozen=True)
class SessionResult:
    """What :meth:`VhostUserBackend.serve` returns."""

    end: SessionEnd
    message: str

    @property
    def exit_status(self) -> int:
        """0 for a clean end (disconnect with rings stopped, or a stop request), else 1."""
        return 0 if self.end in (SessionEnd.DISCONNECTED, SessionEnd.STOPPED) else 1


def _bits(value: int) -> str:
    return ",".join(map(str, feat.bits(value))) or "none"


class VhostUserBackend:
    """Serve ``model`` to the front-end connected on ``sock``.

    :param label: names the session in log lines (the socket path).
    :param stall_timeout: seconds a started message may take to arrive whole.
    """

    def __init__(self, model: VirtioDeviceModel, sock: socket.socket, *, label: str = "",
                 stall_timeout: float = 5.0) -> None:
        self.model = model
        self.label = label or "vhost-user"
        self.channel = Channel(sock, stall_timeout=stall_timeout)
        self.num_queues = len(model.queue_max_sizes)
        self.vrings = [Vring(i) for i in range(self.num_queues)]
        self.host = VhostUserHost(self.vrings, self.label, self._needs_reset)
        self.offered_features = model.device_features() | 1 << F_PROTOCOL_FEATURES
        protocol = (1 << ProtocolFeature.MQ | 1 << ProtocolFeature.REPLY_ACK
                    | 1 << ProtocolFeature.RESET_DEVICE)
        if model.config_size():
            protocol |= 1 << ProtocolFeature.CONFIG
        self.offered_protocol = protocol
        self.protocol_features = 0
        self.features: int | None = None
        self.acked_protocol_bit = False
        self.memory_table: MemoryTable | None = None
        self.active = False
        self.requests = 0
        self._selector: selectors.BaseSelector | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._closed = False
        self._handlers: dict[int, Callable[[Message], bytes | None]] = {
            Request.GET_FEATURES: self._get_features,
            Request.SET_FEATURES: self._set_features,
            Request.SET_OWNER: self._set_owner,
            Request.RESET_OWNER: self._reset_device,
            Request.RESET_DEVICE: self._reset_device,
            Request.SET_MEM_TABLE: self._set_mem_table,
            Request.SET_VRING_NUM: self._set_vring_num,
            Request.SET_VRING_ADDR: self._set_vring_addr,
            Request.SET_VRING_BASE: self._set_vring_base,
            Request.GET_VRING_BASE: self._get_vring_base,
            Request.SET_VRING_KICK: self._set_vring_kick,
            Request.SET_VRING_CALL: self._set_vring_call,
            Request.SET_VRING_ERR: self._set_vring_err,
            Request.GET_PROTOCOL_FEATURES: self._get_protocol_features,
            Request.SET_PROTOCOL_FEATURES: self._set_protocol_features,
            Request.GET_QUEUE_NUM: self._get_queue_num,
            Request.SET_VRING_ENABLE: self._set_vring_enable,
            Request.GET_CONFIG: self._get_config,
            Request.SET_CONFIG: self._set_config,
        }

    # -- the loop ----------------------------------------------------------------------------

    def serve(self) -> SessionResult:
        """Serve until the front-end disconnects, an error ends the session, or :meth:`stop`;
        then reset the model and release everything.  Never raises for what the front-end
        sends."""
        sel = selectors.DefaultSelector()
        self._selector = sel
        try:
            sel.register(self.channel.fileno(), selectors.EVENT_READ, None)
            sel.register(self._wake_r, selectors.EVENT_READ, "stop")
            log.info("%s: front-end connected; serving %s (virtio device %d, %d queue(s))",
                     self.label, self.model.name, self.model.device_id, self.num_queues)
            while True:
                for key, _ in sel.select():
                    if key.data is None:
                        result = self._on_message()
                        if result is not None:
                            return result
                    elif key.data == "stop":
                        return self._end(SessionEnd.STOPPED, "stopped on request")
                    elif isinstance(key.data, Vring):
                        self._on_kick(key.data)
        finally:
            self.close()

    def stop(self) -> None:
        """Make :meth:`serve` return soon (thread- and signal-handler-safe)."""
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _end(self, end: SessionEnd, message: str) -> SessionResult:
        # Logged at INFO only: whoever called serve() reports the result (the command prints
        # it as its one last line), so a failure is not said twice.
        log.info("%s: session ended (%s): %s", self.label, end.name.lower(), message)
        return SessionResult(end, message)

    def _on_message(self) -> SessionResult | None:
        try:
            msg = self.channel.receive()
        except VhostUserProtocolError as exc:
            return self._end(SessionEnd.FAILED, f"{exc}; ending the session")
        if msg is None:
            running = [r.index for r in self.vrings if r.started]
            if running:
                return self._end(
                    SessionEnd.VANISHED,
                    f"front-end disconnected while queue(s) {running} were running (it was "
                    "killed or crashed); the device was stopped")
            return self._end(SessionEnd.DISCONNECTED, "front-end disconnected")
        self.requests += 1
        try:
            return self._handle(msg)
        finally:
            msg.close()  # descriptors no handler took (extra ones, or a refused request's)

    def _handle(self, msg: Message) -> SessionResult | None:
        log.debug("%s: %s flags %#x size %d fds %d", self.label, msg.name, msg.header.flags,
                  msg.header.size, len(msg.fds))
        handler = self._handlers.get(msg.header.request)
        try:
            if handler is None:
                raise VhostUserRequestError("not supported by this back-end", request=msg.name)
            payload = handler(msg)
            if msg.header.request in _REPLYING:
                self.channel.send(encode_reply(msg.header.request, payload or b""))
            elif self._wants_ack(msg):
                self.channel.send(encode_reply(msg.header.request, U64.pack(0)))
        except VhostUserRequestError as exc:
            return self._refuse(msg, exc)
        except VhostUserProtocolError as exc:
            return self._end(SessionEnd.FAILED, f"{exc}; ending the session")
        return None

    def _wants_ack(self, msg: Message) -> bool:
        return msg.header.need_reply and bool(
            self.protocol_features & 1 << ProtocolFeature.REPLY_ACK)

    def _refuse(self, msg: Message, exc: VhostUserError) -> SessionResult | None:
        request = msg.header.request
        try:
            if request == Request.GET_CONFIG:
                # an empty payload is GET_CONFIG's failure answer
                log.error("%s: %s; answered with an empty config", self.label, exc)
                self.channel.send(encode_reply(request))
                return None
            if request not in _REPLYING and self._wants_ack(msg):
                log.error("%s: %s; answered with failure", self.label, exc)
                self.channel.send(encode_reply(request, U64.pack(1)))
                return None
        except VhostUserProtocolError as send_exc:
            return self._end(SessionEnd.FAILED, f"{send_exc}; ending the session")
        return self._end(SessionEnd.FAILED, f"{exc}; the front-end did not ask for an answer "
                         "(REPLY_ACK), so the session ends")

    def _on_kick(self, ring: Vring) -> None:
        if not ring.drain_kick():
            log.warning("%s: kick descriptor of queue %d closed by the front-end", self.label,
                        ring.index)
            self._forget_kick(ring)
            return
        if ring.live and self.host.broken is None:
            self._call_model(lambda: self.model.kick(ring.index), f"kick of queue {ring.index}")

    def _call_model(self, action: Callable[[], None], what: str) -> None:
        try:
            action()
        except VirtqueueError as exc:
            self.host.needs_reset(str(exc))
        except Exception as exc:  # a model bug must not take the session down silently
            log.error("%s: model %s failed on %s: %s: %s", self.label, self.model.name, what,
                      type(exc).__name__, exc)
            log.debug("model failure", exc_info=True)
            self.host.needs_reset(f"model failure: {exc}")

    def _needs_reset(self, reason: str) -> None:
        log.error("%s: %s needs a reset: %s (queues stop until the front-end restarts the "
                  "device; signalled on the error eventfds)", self.label, self.model.name,
                  reason)
        for ring in self.vrings:
            ring.signal_error()

    # -- ring helpers ------------------------------------------------------------------------

    def _ring(self, msg: Message, index: int) -> Vring:
        if not 0 <= index < self.num_queues:
            raise VhostUserRequestError(
                f"queue index {index} out of range ({self.model.name} has {self.num_queues} "
                "queue(s))", request=msg.name)
        return self.vrings[index]

    def _not_started(self, msg: Message, ring: Vring) -> None:
        if ring.started:
            raise VhostUserRequestError(f"queue {ring.index} is running (stop it with "
                                        "GET_VRING_BASE first)", request=msg.name)

    def _forget_kick(self, ring: Vring) -> None:
        if ring.kick_fd is not None:
            if self._selector is not None:
                try:
                    self._selector.unregister(ring.kick_fd)
                except (KeyError, ValueError):
                    pass
            os.close(ring.kick_fd)
            ring.kick_fd = None

    def _build_queue(self, ring: Vring, request: str) -> DeviceQueue:
        table, addr, features = self.memory_table, ring.addr, self.features
        missing = [what for what, value in (("SET_FEATURES", features),
                                            ("SET_MEM_TABLE", table),
                                            ("SET_VRING_ADDR", addr)) if value is None]
        if ring.num == 0:
            missing.append("SET_VRING_NUM")
        if missing or table is None or addr is None or features is None:
            raise VhostUserRequestError(f"queue {ring.index} started before "
                                        f"{', '.join(missing)}", request=request)
        desc, avail, used = self._translate(ring.index, ring.num, addr.desc, addr.avail,
                                            addr.used, table, request)
        used_idx = table.memory.read_u16(used + 2)
        try:
            return DeviceQueue(table.memory, ring.index, ring.num, desc, avail, used,
                               event_idx=feat.has(features, feat.EVENT_IDX),
                               indirect=feat.has(features, feat.INDIRECT_DESC),
                               last_avail_idx=ring.base, used_idx=used_idx)
        except VirtqueueError as exc:
            raise VhostUserRequestError(str(exc), request=request) from None

    @staticmethod
    def _translate(index: int, num: int, desc: int, avail: int, used: int,
                   table: MemoryTable, request: str) -> tuple[int, int, int]:
        """Front-end addresses of the three ring areas -> guest-physical addresses."""
        out = []
        for what, uva, length in (("descriptor table", desc, 16 * num),
                                  ("available ring", avail, 6 + 2 * num),
                                  ("used ring", used, 6 + 8 * num)):
            gpa = table.to_gpa(uva, length)
            if gpa is None:
                raise VhostUserRequestError(
                    f"queue {index}: {what} at front-end address {uva:#x} ({length} bytes) is "
                    f"outside every memory region ({table.describe()})", request=request)
            out.append(gpa)
        return out[0], out[1], out[2]

    def _go_live(self, ring: Vring) -> None:
        """A ring became started and enabled: activate the model, or kick it for the ring."""
        if not ring.live or self.host.broken is not None:
            return
        if not self.active:
            self.active = True
            features = self.features or 0
            log.info("%s: device live: features %#x (bits %s)", self.label, features,
                     _bits(features))
            self._call_model(lambda: self.model.activate(self.host, features), "activate")
        else:
            self._call_model(lambda: self.model.kick(ring.index), f"start of queue {ring.index}")

    def _stop_model_if_idle(self) -> None:
        if self.active and not any(r.started for r in self.vrings):
            self._reset_model()

    def _reset_model(self) -> None:
        if self.active:
            self.active = False
            try:
                self.model.reset()
            except Exception as exc:
                log.error("%s: model %s failed to reset: %s: %s", self.label, self.model.name,
                          type(exc).__name__, exc)
        with self.host.lock:
            self.host.broken = None

    # -- requests ----------------------------------------------------------------------------

    def _get_features(self, msg: Message) -> bytes:
        return U64.pack(self.offered_features)

    def _set_features(self, msg: Message) -> None:
        value = decode_u64(Request.SET_FEATURES, msg.payload)
        extra = value & ~self.offered_features
        if extra:
            raise VhostUserRequestError(f"features {value:#x} include bits {_bits(extra)} that "
                                        "were not offered", request=msg.name)
        virtio = value & ~(1 << F_PROTOCOL_FEATURES)
        if not feat.has(virtio, feat.VERSION_1):
            raise VhostUserRequestError(
                f"features {value:#x} lack VIRTIO_F_VERSION_1: the front-end drives the device "
                "as a legacy virtio device, which this back-end does not serve (on virtio-mmio "
                "add -global virtio-mmio.force-legacy=false to QEMU)", request=msg.name)
        if not self.model.negotiate(virtio):
            raise VhostUserRequestError(f"{self.model.name} refuses features {virtio:#x}",
                                        request=msg.name)
        self.features = virtio
        self.acked_protocol_bit = bool(value >> F_PROTOCOL_FEATURES & 1)
        log.info("%s: features set: %#x (bits %s)", self.label, virtio, _bits(virtio))
        return None

    def _set_owner(self, msg: Message) -> None:
        return None

    def _reset_device(self, msg: Message) -> None:
        for ring in self.vrings:
            ring.stop()
            ring.enabled = False
            self._forget_kick(ring)
        self._reset_model()
        log.info("%s: device reset by %s", self.label, msg.name)
        return None

    def _set_mem_table(self, msg: Message) -> None:
        regions = decode_memory_table(msg.payload)
        table = MemoryTable(regions, msg.take_fds(len(regions)))
        log.info("%s: memory table: %s", self.label, table.describe())
        old, self.memory_table = self.memory_table, table
        self.host.set_memory(table.memory)
        failed = []
        for ring in self.vrings:  # running rings move to the new mapping (same indexes)
            if ring.queue is None:
                continue
            with self.host.lock:
                ring.base = ring.queue.last_avail_idx
                ring.queue.close()
                ring.queue = None
            try:
                queue = self._build_queue(ring, msg.name)
            except VhostUserRequestError:
                failed.append(ring.index)
                ring.stop()
                continue
            with self.host.lock:
                ring.queue = queue
        if old is not None:
            old.close()
        if failed:
            self._stop_model_if_idle()
            raise VhostUserRequestError(f"queue(s) {failed} are outside the new memory table "
                                        "and were stopped", request=msg.name)
        return None

    def _set_vring_num(self, msg: Message) -> None:
        index, num = decode_state(Request.SET_VRING_NUM, msg.payload)
        ring = self._ring(msg, index)
        self._not_started(msg, ring)
        if not (0 < num <= 32768 and num & (num - 1) == 0):
            raise VhostUserRequestError(f"queue {index}: size {num} is not a power of 2 from 1 "
                                        "to 32768", request=msg.name)
        ring.num = num
        return None

    def _set_vring_addr(self, msg: Message) -> None:
        addr = decode_addr(msg.payload)
        ring = self._ring(msg, addr.index)
        self._not_started(msg, ring)
        if addr.flags & 1:
            raise VhostUserRequestError("dirty-page logging (VHOST_VRING_F_LOG) is not "
                                        "supported", request=msg.name)
        if self.memory_table is not None and ring.num:
            self._translate(addr.index, ring.num, addr.desc, addr.avail, addr.used,
                            self.memory_table, msg.name)
        ring.addr = addr
        return None

    def _set_vring_base(self, msg: Message) -> None:
        index, num = decode_state(Request.SET_VRING_BASE, msg.payload)
        ring = self._ring(msg, index)
        self._not_started(msg, ring)
        if num > 0xFFFF:
            raise VhostUserRequestError(f"queue {index}: base {num:#x} has bits above 15 "
                                        "(split rings only)", request=msg.name)
        ring.base = num
        return None

    def _get_vring_base(self, msg: Message) -> bytes:
        index, _ = decode_state(Request.GET_VRING_BASE, msg.payload)
        ring = self._ring(msg, index)
        was_started = ring.started
        if ring.started and self.active and sum(r.started for r in self.vrings) == 1:
            self._reset_model()  # the last running ring: in-flight requests finish first
        with self.host.lock:
            base = ring.stop()
        self._forget_kick(ring)
        self._stop_model_if_idle()
        if was_started:
            log.info("%s: queue %d stopped at index %d", self.label, index, base)
        return VRING_STATE.pack(index, base)

    def _vring_file(self, msg: Message) -> tuple[Vring, int | None]:
        value = decode_u64(Request(msg.header.request), msg.payload)
        if value & ~(VRING_INDEX_MASK | VRING_NOFD_MASK):
            raise VhostUserRequestError(f"value {value:#x} has unknown bits", request=msg.name)
        ring = self._ring(msg, value & VRING_INDEX_MASK)
        if value & VRING_NOFD_MASK:
            msg.take_fds(0)
            return ring, None
        fd = msg.take_fds(1)[0]
        try:
            check_event_fd(fd, msg.name.removeprefix("SET_VRING_").lower(), msg.name)
        except VhostUserRequestError:
            os.close(fd)
            raise
        return ring, fd

    def _set_vring_kick(self, msg: Message) -> None:
        ring, fd = self._vring_file(msg)
        if fd is None:
            raise VhostUserRequestError(f"queue {ring.index}: polling without a kick "
                                        "descriptor is not supported", request=msg.name)
        self._forget_kick(ring)
        ring.kick_fd = fd
        assert self._selector is not None
        self._selector.register(fd, selectors.EVENT_READ, ring)
        if ring.started:
            return None  # a new kick descriptor for a running ring
        queue = self._build_queue(ring, msg.name)
        with self.host.lock:
            ring.queue = queue
            ring.started = True
            if not self.acked_protocol_bit:
                ring.enabled = True  # without protocol features rings start enabled
        log.info("%s: queue %d started: size %d, base %d, desc/avail/used GPA %#x/%#x/%#x",
                 self.label, ring.index, ring.num, ring.base, queue.desc_addr,
                 queue.avail_addr, queue.used_addr)
        self._go_live(ring)
        return None

    def _set_vring_call(self, msg: Message) -> None:
        ring, fd = self._vring_file(msg)
        ring.set_call_fd(fd)
        return None

    def _set_vring_err(self, msg: Message) -> None:
        ring, fd = self._vring_file(msg)
        ring.set_err_fd(fd)
        return None

    def _get_protocol_features(self, msg: Message) -> bytes:
        return U64.pack(self.offered_protocol)

    def _set_protocol_features(self, msg: Message) -> None:
        value = decode_u64(Request.SET_PROTOCOL_FEATURES, msg.payload)
        extra = value & ~self.offered_protocol
        if extra:
            raise VhostUserRequestError(f"protocol features {value:#x} include bits "
                                        f"{_bits(extra)} that were not offered",
                                        request=msg.name)
        self.protocol_features = value
        return None

    def _get_queue_num(self, msg: Message) -> bytes:
        return U64.pack(self.num_queues)

    def _set_vring_enable(self, msg: Message) -> None:
        index, num = decode_state(Request.SET_VRING_ENABLE, msg.payload)
        ring = self._ring(msg, index)
        if num not in (0, 1):
            raise VhostUserRequestError(f"queue {index}: enable value {num} (0 or 1)",
                                        request=msg.name)
        with self.host.lock:
            ring.enabled = bool(num)
        if num:
            self._go_live(ring)
        return None

    def _get_config(self, msg: Message) -> bytes:
        req = decode_config(Request.GET_CONFIG, msg.payload)
        try:
            data = self.model.read_config(req.offset, req.size)
        except (ValueError, VhostUserError) as exc:
            raise VhostUserRequestError(str(exc), request=msg.name) from None
        data = (bytes(data) + bytes(req.size))[:req.size]
        return msg.payload[:12] + data

    def _set_config(self, msg: Message) -> None:
        req = decode_config(Request.SET_CONFIG, msg.payload)
        if req.flags not in (0, 1):
            raise VhostUserRequestError(f"config flags {req.flags:#x} (0 or 1)",
                                        request=msg.name)
        try:
            self.model.write_config(req.offset, req.data)
        except (ValueError, VhostUserError) as exc:
            raise VhostUserRequestError(str(exc), request=msg.name) from None
        return None

    # -- end -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Reset the model and release the rings, the memory table and the connection;
        idempotent."""
        if self._closed:
            return
        self._closed = True
        self._reset_model()
        for ring in self.vrings:
            self._forget_kick(ring)
            with self.host.lock:
                ring.close()
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        if self.memory_table is not None:
            self.memory_table.close()
            self.memory_table = None
        self.channel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
