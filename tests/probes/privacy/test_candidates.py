"""The privacy probes' SynthWorld candidates are exactly what the reference models trained on."""

from __future__ import annotations

import inspect

import numpy as np

from vlmtrust.probes.privacy import _candidates as c


def test_canary_members_are_reference_clips_training_canaries() -> None:
    from vlmtrust.reference import train_clip

    assert (c.CANARY_SEED, c.CANARY_MEMBERS) == (
        train_clip.CANARY_SEED,
        train_clip.N_CANARY_MEMBERS,
    )
    members, _ = train_clip.canary_samples()
    got = [s for s in c.canary_candidates("planted", 3) if s.attributes["member"] == "1"]
    assert len(got) == len(members)
    for s, m in zip(got, members, strict=True):
        assert s.metadata["caption"] == m.caption
        assert np.array_equal(np.asarray(s.images[0].image), np.asarray(m.image))
    # non-members, control members and population never overlap a trained index
    assert c.NON_MEMBER_START >= train_clip.N_CANARY_MEMBERS + train_clip.N_CANARY_NONMEMBERS


def test_card_members_are_reference_vlms_training_cards() -> None:
    from vlmtrust.reference import train_vlm

    assert inspect.signature(train_vlm._Data).parameters["n_docs"].default == c.CARD_MEMBERS
    assert {k: v[0] for k, v in train_vlm.PII_QS.items()} == c.PII_QUESTIONS
    assert train_vlm.PII_ANSWERS == c.PII_ANSWERS
    from vlmtrust.data.synthworld import SynthWorld
    from vlmtrust.reference._common import IMAGE_SIZE

    assert IMAGE_SIZE == c.MODEL_IMAGE_SIZE
    trained = SynthWorld(seed=0, image_size=IMAGE_SIZE).documents(2, identities="pool", size=256)
    got = [s for s in c.card_candidates("planted", 1) if s.attributes["member"] == "1"][:2]
    for s, d in zip(got, trained, strict=True):
        want = d.image.resize((IMAGE_SIZE, IMAGE_SIZE), 3)  # as train_vlm._Data resizes
        assert np.array_equal(np.asarray(s.images[0].image), np.asarray(want))
        assert s.target is not None and s.target.endswith(".")


def test_splits() -> None:
    planted = c.canary_candidates("planted", 5, 2)
    control = c.canary_candidates("control", 5)
    confounded = c.canary_candidates("confounded", 5)
    roles = [s.attributes["member"] for s in planted]
    assert roles == ["1"] * 32 + ["0"] * 5 + ["population"] * 2
    assert not {s.id for s in control if s.attributes["member"] == "1"} & {s.id for s in planted}
    dark = [s for s in confounded if s.attributes["member"] == "0"]
    light = [s for s in planted if s.attributes["member"] == "0"]
    assert np.asarray(dark[0].images[0].image).mean() < np.asarray(light[0].images[0].image).mean()


def test_masked_phone_line_is_blank() -> None:
    from vlmtrust.data.synthworld import SynthWorld

    d = SynthWorld(seed=0).documents(1, identities="pool", size=256)[0]
    masked = np.asarray(c.mask_card_line(d.image, "phone"), dtype=int)
    band = masked[int(0.56 * 256) : int(0.655 * 256), int(0.34 * 256) :]
    assert (band == band[0, 0]).all()  # one colour: the tint
    email = np.asarray(d.image, dtype=int)[int(0.47 * 256) : int(0.54 * 256)]
    assert (masked[int(0.47 * 256) : int(0.54 * 256)] == email).all()  # the line above kept
