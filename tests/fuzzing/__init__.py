"""dlarules' own fuzz suite: ONNX graph generators, corpus mutations and the promise checker.

`draw` is the one source of choices (a hypothesis draw in the tests, a seeded random.Random in bench/fuzz.py),
`graphs` builds small ONNX models over lowering.OP_TABLE, `mutate` damages the small corpus models, `cases` turns a
model into a command (check / compare / fix / api.check), and `harness` runs one case in-process and says which
promise it broke (crash, memory, data-loss, bad-error, bad-output) or ok.
"""
