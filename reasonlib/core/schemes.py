"""The position schemes' names and the sizes they share, without torch: the one home that
the model (:mod:`reasonlib.core.model`) and the parameter schema (:mod:`reasonlib.train.params`) read.
What each scheme does is in ``model.py`` and docs/positions.md."""

POS_SCHEMES = ("rope", "nope", "abacus", "coupled", "local")
PLACED = ("abacus", "coupled", "local")  # the schemes whose positions are digit places
ROTARY = ("rope", "coupled", "local")    # the schemes that rotate channel pairs (even head size)
WINDOW = (1, 0)  # local: how many places below its own a query sees, in layer 0 / later layers
MAX_PLACE = 32  # abacus table size: places 1..MAX_PLACE (training offset + longest number)

# what each scheme builds in (docs/positions.md): 08 prints it beside the scheme's numbers,
# and the summary's limitations name the placed ones (a built-in prior is not a found one)
STRUCTURE = {
    "rope": "`rope` rotates by the token's index in the row: relative distances only, nothing "
            "about a digit's place in its number",
    "nope": "`nope` has no position signal: the causal mask alone orders tokens",
    "abacus": "`abacus` positions give each digit a learned vector for its place in its number",
    "coupled": "`coupled` positions give each digit its place in its number, and seat the "
               "query that writes a digit with the operands' digits of that place",
    "local": "`local` positions hard-code the column: a digit's attention is kept to its own "
             "place and the place below, the structure column addition needs; its length "
             "result (6b) says what that structure buys, not that a model finds it",
}
