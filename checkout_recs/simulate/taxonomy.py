"""The simulated category tree, its complementarity graph and per-category price and title words.

Two levels: top categories and leaves. Complements are directed (what is bought *after* what:
a phone is followed by a case, rarely the other way round) with weights in (0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# top -> [(leaf, median price, take rate, title words)]
TREE: dict[str, list[tuple[str, float, float, tuple[str, ...]]]] = {
    "Electronics": [
        (
            "Smartphones",
            320.0,
            0.08,
            ("phone", "unlocked", "128GB", "dual-sim", "5G", "smartphone"),
        ),
        ("Phone cases", 15.0, 0.15, ("case", "silicone", "leather", "clear", "rugged", "cover")),
        ("Chargers", 20.0, 0.14, ("charger", "usb-c", "fast", "wireless", "cable", "65W")),
        (
            "Headphones",
            80.0,
            0.10,
            ("headphones", "wireless", "noise-cancelling", "earbuds", "over-ear"),
        ),
        ("Laptops", 650.0, 0.07, ("laptop", "16GB", "ssd", "ultrabook", "14-inch", "gaming")),
        ("Laptop bags", 35.0, 0.13, ("bag", "sleeve", "backpack", "padded", "15-inch")),
    ],
    "Outdoors": [
        ("Tents", 180.0, 0.10, ("tent", "2-person", "dome", "ultralight", "waterproof")),
        ("Sleeping bags", 70.0, 0.11, ("sleeping-bag", "down", "mummy", "3-season", "compact")),
        ("Camping stoves", 45.0, 0.12, ("stove", "gas", "burner", "titanium", "compact")),
        ("Hiking boots", 110.0, 0.11, ("boots", "hiking", "gore-tex", "leather", "trail")),
        ("Backpacks", 90.0, 0.11, ("backpack", "40L", "trekking", "daypack", "rain-cover")),
    ],
    "Home": [
        (
            "Coffee machines",
            150.0,
            0.09,
            ("espresso", "machine", "grinder", "bean-to-cup", "steel"),
        ),
        ("Coffee beans", 14.0, 0.15, ("beans", "arabica", "roast", "single-origin", "1kg")),
        ("Mugs", 12.0, 0.15, ("mug", "ceramic", "handmade", "set", "stoneware")),
        ("Bedding", 60.0, 0.12, ("duvet", "cotton", "linen", "king", "pillow")),
        ("Lamps", 45.0, 0.12, ("lamp", "vintage", "brass", "floor", "desk")),
    ],
    "Fashion": [
        ("Sneakers", 95.0, 0.11, ("sneakers", "running", "white", "retro", "size-42")),
        ("Shoe care", 12.0, 0.15, ("shoe-care", "cleaner", "brush", "protector", "kit")),
        ("Jackets", 120.0, 0.11, ("jacket", "denim", "wool", "puffer", "rain")),
        ("Handbags", 140.0, 0.10, ("handbag", "leather", "tote", "crossbody", "designer")),
        ("Watches", 210.0, 0.09, ("watch", "automatic", "steel", "chronograph", "vintage")),
    ],
    "Baby & Kids": [
        ("Strollers", 230.0, 0.09, ("stroller", "pushchair", "foldable", "travel-system", "buggy")),
        ("Rain covers", 18.0, 0.15, ("rain-cover", "stroller", "universal", "clear", "windproof")),
        ("Toys", 22.0, 0.14, ("toy", "wooden", "puzzle", "lego", "plush")),
        ("Children's books", 9.0, 0.15, ("book", "picture", "bedtime", "hardback", "bundle")),
    ],
    "Sports": [
        ("Bicycles", 420.0, 0.08, ("bike", "road", "hybrid", "gravel", "aluminium")),
        ("Bike helmets", 45.0, 0.13, ("helmet", "mips", "road", "commuter", "lightweight")),
        ("Bike locks", 30.0, 0.14, ("lock", "d-lock", "chain", "sold-secure", "folding")),
        ("Yoga mats", 25.0, 0.14, ("yoga-mat", "non-slip", "cork", "6mm", "travel")),
        ("Dumbbells", 55.0, 0.12, ("dumbbells", "adjustable", "pair", "10kg", "hex")),
    ],
    "Media & Games": [
        ("Game consoles", 300.0, 0.08, ("console", "bundle", "1TB", "handheld", "boxed")),
        ("Video games", 30.0, 0.13, ("game", "sealed", "edition", "disc", "collector")),
        ("Controllers", 45.0, 0.13, ("controller", "wireless", "pro", "pad", "charging")),
        ("Vinyl records", 20.0, 0.14, ("vinyl", "lp", "first-press", "180g", "album")),
        ("Turntables", 190.0, 0.09, ("turntable", "belt-drive", "usb", "cartridge", "hifi")),
    ],
    "Garden": [
        ("Lawn mowers", 260.0, 0.09, ("mower", "cordless", "petrol", "self-propelled", "40cm")),
        ("Garden tools", 25.0, 0.14, ("spade", "pruner", "rake", "trowel", "set")),
        ("Plant pots", 16.0, 0.15, ("pot", "terracotta", "planter", "ceramic", "hanging")),
        ("Seeds", 6.0, 0.15, ("seeds", "heirloom", "organic", "tomato", "wildflower")),
    ],
}

# (from leaf, to leaf, weight): bought after the first, the second is likely.
COMPLEMENTS: tuple[tuple[str, str, float], ...] = (
    ("Smartphones", "Phone cases", 1.0),
    ("Smartphones", "Chargers", 0.8),
    ("Smartphones", "Headphones", 0.5),
    ("Laptops", "Laptop bags", 1.0),
    ("Laptops", "Chargers", 0.5),
    ("Laptops", "Headphones", 0.3),
    ("Tents", "Sleeping bags", 1.0),
    ("Tents", "Camping stoves", 0.8),
    ("Tents", "Backpacks", 0.6),
    ("Tents", "Hiking boots", 0.4),
    ("Hiking boots", "Backpacks", 0.5),
    ("Hiking boots", "Shoe care", 0.5),
    ("Coffee machines", "Coffee beans", 1.0),
    ("Coffee machines", "Mugs", 0.7),
    ("Sneakers", "Shoe care", 1.0),
    ("Sneakers", "Jackets", 0.3),
    ("Strollers", "Rain covers", 1.0),
    ("Strollers", "Toys", 0.4),
    ("Toys", "Children's books", 0.5),
    ("Bicycles", "Bike helmets", 1.0),
    ("Bicycles", "Bike locks", 1.0),
    ("Game consoles", "Video games", 1.0),
    ("Game consoles", "Controllers", 0.9),
    ("Turntables", "Vinyl records", 1.0),
    ("Lawn mowers", "Garden tools", 0.6),
    ("Plant pots", "Seeds", 0.8),
    ("Yoga mats", "Dumbbells", 0.4),
    ("Bedding", "Lamps", 0.3),
)

#: Weight of the reverse direction of a complement (a case buyer rarely then buys a phone).
REVERSE_WEIGHT = 0.25
#: Weight of buying in the same leaf again (substitutes are weak complements).
SAME_LEAF_WEIGHT = 0.15
#: Generic title words mixed in with the leaf's words.
CONDITION_WORDS = ("new", "like-new", "used", "refurbished", "boxed", "vintage", "mint", "bundle")


@dataclass(frozen=True)
class Taxonomy:
    """Arrays describing the tree; leaf ``k`` has category id ``leaf_ids[k]``.

    Attributes
    ----------
    names : list[str], (n_categories,)   category names, index = category_id.
    parent : np.ndarray[int32], (n_categories,)   parent id, -1 for a top category.
    top : np.ndarray[int32], (n_categories,)   top category id (itself for a top).
    top_ids : np.ndarray[int32], (n_top,)   ids of the top categories.
    leaf_ids : np.ndarray[int32], (n_leaf,)   ids of the leaves.
    leaf_top : np.ndarray[int32], (n_leaf,)   index into ``top_ids`` of each leaf's top.
    price_mu, take_rate : np.ndarray[float64], (n_leaf,)   log median price; take rate in (0, 1).
    comp : np.ndarray[float64], (n_leaf, n_leaf)   comp[a, b] in [0, 1]: buying a makes b likely.
    words : list[tuple[str, ...]], (n_leaf,)   title words per leaf.
    """

    names: list[str]
    parent: np.ndarray
    top: np.ndarray
    top_ids: np.ndarray
    leaf_ids: np.ndarray
    leaf_top: np.ndarray
    price_mu: np.ndarray
    take_rate: np.ndarray
    comp: np.ndarray
    words: list[tuple[str, ...]]

    @property
    def n_leaf(self) -> int:
        """Number of leaf categories."""
        return len(self.leaf_ids)


def build_taxonomy() -> Taxonomy:
    """The fixed simulated taxonomy (8 top categories, 40 leaves, 48 categories in all)."""
    names: list[str] = []
    parent: list[int] = []
    top: list[int] = []
    top_ids: list[int] = []
    leaf_ids: list[int] = []
    leaf_top: list[int] = []
    price_mu: list[float] = []
    take: list[float] = []
    words: list[tuple[str, ...]] = []
    for t_idx, (top_name, leaves) in enumerate(TREE.items()):
        tid = len(names)
        names.append(top_name)
        parent.append(-1)
        top.append(tid)
        top_ids.append(tid)
        for leaf, median_price, rate, leaf_words in leaves:
            leaf_ids.append(len(names))
            names.append(leaf)
            parent.append(tid)
            top.append(tid)
            leaf_top.append(t_idx)
            price_mu.append(float(np.log(median_price)))
            take.append(rate)
            words.append(leaf_words)
    leaf_index = {names[c]: k for k, c in enumerate(leaf_ids)}
    comp = np.zeros((len(leaf_ids), len(leaf_ids)))
    np.fill_diagonal(comp, SAME_LEAF_WEIGHT)
    for a, b, weight in COMPLEMENTS:
        ia, ib = leaf_index[a], leaf_index[b]
        comp[ia, ib] = max(comp[ia, ib], weight)
        comp[ib, ia] = max(comp[ib, ia], weight * REVERSE_WEIGHT)
    return Taxonomy(
        names=names,
        parent=np.asarray(parent, np.int32),
        top=np.asarray(top, np.int32),
        top_ids=np.asarray(top_ids, np.int32),
        leaf_ids=np.asarray(leaf_ids, np.int32),
        leaf_top=np.asarray(leaf_top, np.int32),
        price_mu=np.asarray(price_mu),
        take_rate=np.asarray(take),
        comp=comp,
        words=words,
    )
