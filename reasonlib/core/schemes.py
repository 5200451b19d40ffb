"""The position schemes' names and the sizes they share, without torch: the one home that
the model (:mod:`reasonlib.core.model`) and the parameter schema (:mod:`reasonlib.train.params`) read.
What each scheme does is in ``model.py`` and docs/positions.md."""

POS_SCHEMES = ("rope", "nope", "abacus", "coupled", "local")
PLACED = ("abacus", "coupled", "local")  # the schemes whose positions are digit places
ROTARY = ("rope", "coupled", "local")    # the schemes that rotate channel pairs (even head size)
WINDOW = (1, 0)  # local: how many places below its own a query sees, in layer 0 / later layers
MAX_PLACE = 32  # abacus table size: places 1..MAX_PLACE (training offset + longest number)
