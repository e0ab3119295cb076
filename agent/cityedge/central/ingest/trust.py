"""Key bindings and rotations kept in the store, so that every ingest worker and every
restart agree on them (docs/command-post.md, "Keys live in the database").

The verifier keeps its rules (docs/protocol.md §12); only where its memory lives moves:

- after each message, the keys the verifier bound for the first time (a key seen first
  with its gateway, the keys of a rotation) are claimed in the store, all or none: the
  first claim wins. A lost claim means another worker bound a key first: this worker
  adopts the store's binding, undoes what it learned, and verifies the message again,
  so the verdict is the verifier's own (`wrong-gateway` for another gateway's key);
- a message refused for an `unknown-key` is verified again once the keys it names (its
  signer, its announcements' signers) were looked up in the store: another worker may
  have learned them from a rotation. One look-up per batch, whatever it holds.

What is safe to cache is cached: a binding's gateway never changes once claimed, so a
key held bound is never looked up again for its gateway. A key this worker does not know
is looked up each time before it is refused, never assumed absent.

The one thing that does change is retirement (`cityedge central keys retire`): before
every batch, one cheap query counts the retired keys (a retirement is never undone and
no row is deleted, so the count changes exactly when a key is retired); when it moved,
the retired keys are read and the verifier stops trusting each — even a key the operator
gave with --trust (`ingest.key_retired_but_given`): the database's retirement wins. So
a retirement committed before a batch is decoded holds for that batch and every later
one, in every worker; a batch decoded just before may still be stored under the key.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from cityedge.central.ingest.decode import Decoder, Outcome_, Rejected, outcome
from cityedge.central.ingest.store.base import Binding, Store, StoreError, claimed
from cityedge.central.verifier import Verdict, Verifier
from cityedge.protocol.announcements import unverified_announcements
from cityedge.protocol.decoding import MAX_MESSAGE_BYTES, EnvelopeError, Reason, unpack
from cityedge.protocol.keys import KEY_ID_PATTERN, PublicKey

log = structlog.get_logger(__name__)

# A state message names at most 1 + 8 keys (its signer, its announcements' signers) and
# binds at most twice that many; each lost claim adopts one of them for good, so the
# retries end well within this bound.
MAX_TRIES = 20


class SharedTrust:
    """A `Decoder` whose verifier's key bindings live in `store`."""

    def __init__(self, decoder: Decoder, store: Store) -> None:
        self.decoder = decoder
        self.store = store
        self._retired_seen = 0  # the store's count of retired keys, when last read

    @property
    def verifier(self) -> Verifier:
        return self.decoder.verifier

    async def seed(self) -> None:
        """Claim the bindings the operator gave (GATEWAY=KEY), so a worker given only the
        bare key agrees. A store that says otherwise is logged; in this worker the
        operator's word stands, as an explicit binding always did."""
        given = [Binding(kid, gateway) for kid, gateway in sorted(self.verifier.bindings.items())]
        for start in range(0, len(given), 1000):
            pending = given[start : start + 1000]
            while pending:  # bounded: a round that does not claim all drops a clash
                held = await self.store.claim(pending)  # all or none
                clash = [c for c in pending if not claimed(held, [c]) and c.key_id in held]
                for claim in clash:
                    log.warning("ingest.binding_conflict", key=claim.key_id,
                                given=claim.gateway, stored=held[claim.key_id].gateway)  # fmt: skip
                if not clash:
                    break
                pending = [c for c in pending if c not in clash]
        await self._honour_retirements()

    async def _honour_retirements(self) -> None:
        """Stop trusting the keys retired in the store since last asked."""
        count, retired = await self.store.retirements(self._retired_seen)
        for binding in retired:
            self._retire(binding)
        self._retired_seen = count

    def _retire(self, binding: Binding) -> None:
        v, kid = self.verifier, binding.key_id
        if kid in v.retired:
            return
        if v.given(kid):
            log.warning("ingest.key_retired_but_given", key=kid, gateway=binding.gateway,
                        reason=binding.retired_reason)  # fmt: skip
        else:
            log.info("ingest.key_retired", key=kid, gateway=binding.gateway,
                     reason=binding.retired_reason)  # fmt: skip
        v.retire_key(kid)

    async def decode(self, deliveries: Sequence[tuple[str, bytes]]) -> list[Outcome_]:
        """The outcome of each (topic, payload), in order."""
        await self._honour_retirements()
        outcomes = [await self._decode(topic, payload) for topic, payload in deliveries]
        unknown = [
            i for i, o in enumerate(outcomes)
            if isinstance(o, Rejected) and o.reason == Reason.UNKNOWN_KEY
        ]  # fmt: skip
        if unknown:
            named = {kid for i in unknown for kid in signers(*deliveries[i])}
            unknown_here = named - set(self.verifier.gateway_keys) - self.verifier.retired
            if await self._look_up(unknown_here):
                for i in unknown:
                    outcomes[i] = await self._decode(*deliveries[i])
        return outcomes

    async def _decode(self, topic: str, payload: bytes) -> Outcome_:
        for _ in range(MAX_TRIES):
            verdict = self.verifier.verify(topic, payload)
            if not verdict.bound or await self._claim(verdict):
                return outcome(topic, payload, verdict)
        detail = "key bindings changed under every try; refused to be safe"
        return Rejected(topic, Reason.WRONG_GATEWAY, detail)

    async def _claim(self, verdict: Verdict) -> bool:
        """Claim what `verdict` bound; False if another gateway held a key first (its
        binding is adopted, what this worker learned is undone)."""
        v = self.verifier
        vouchers = {new: old for old, new in verdict.rotated}
        claims = []
        for kid in verdict.bound:
            gateway = v.owner(kid)
            if gateway is None:  # cannot happen: the verifier just bound it
                continue
            voucher = vouchers.get(kid)
            raw = v.gateway_keys[kid].raw if voucher is not None else None
            claims.append(Binding(kid, gateway, raw, voucher))
        try:
            held = await self.store.claim(claims)
        except StoreError:  # not claimed: forget it, so the batch's retry claims it again
            for claim in claims:
                v.adopt(claim.key_id, None)
            raise
        if claimed(held, claims):
            for old, new in verdict.rotated:
                log.info("ingest.rotation_stored", gateway=held[new].gateway, old=old, new=new)
            return True
        for claim in claims:
            stored = held.get(claim.key_id)
            if stored is None:
                v.adopt(claim.key_id, None)
            else:
                self._adopt(stored)
                if stored.gateway != claim.gateway:
                    log.warning("ingest.binding_lost", key=claim.key_id, seen=claim.gateway,
                                bound=stored.gateway)  # fmt: skip
        return False

    async def _look_up(self, key_ids: set[str]) -> bool:
        """Adopt what the store holds of these keys; True if it trusts one of them."""
        if not key_ids:
            return False
        held = await self.store.bindings(key_ids)
        for binding in held.values():
            self._adopt(binding)
        return any(kid in self.verifier.gateway_keys for kid in held)

    def _adopt(self, binding: Binding) -> None:
        key = None
        if binding.retired is not None:
            self.verifier.adopt(binding.key_id, binding.gateway)
            self._retire(binding)
            return
        if binding.public_key is not None:
            try:
                key = PublicKey(binding.public_key)
            except ValueError:  # a row no verifier wrote: the binding alone still counts
                log.warning("ingest.stored_key_unusable", key=binding.key_id)
        self.verifier.adopt(binding.key_id, binding.gateway, key)


def signers(topic: str, payload: bytes) -> set[str]:
    """The key ids a payload names as its signer and, for a state message, as its key
    announcements' signers — read without checking anything, only to know which keys
    to look up before refusing it."""
    chain = unverified_announcements(payload) if topic.endswith("/state") else []
    return {kid for item in (payload, *chain) if (kid := _signer(item)) is not None}


def _signer(payload: bytes) -> str | None:
    try:
        outer = unpack(bytes(payload[:MAX_MESSAGE_BYTES]), "envelope")
    except EnvelopeError:
        return None
    kid = outer.get("kid") if isinstance(outer, dict) else None
    return kid if isinstance(kid, str) and KEY_ID_PATTERN.match(kid) else None
