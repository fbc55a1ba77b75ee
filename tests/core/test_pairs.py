from iidfusion.core.pairs import modality_pairs


def test_every_unordered_pair_once_in_the_order_of_the_names():
    assert modality_pairs(["text", "image", "depth"]) == (("text", "image"), ("text", "depth"), ("image", "depth"))
    names = [f"m{k}" for k in range(12)]
    pairs = modality_pairs(names)
    assert len(pairs) == 12 * 11 // 2 == len(set(pairs))
    assert all(names.index(a) < names.index(b) for a, b in pairs)
    assert modality_pairs(["only"]) == () and modality_pairs([]) == ()
