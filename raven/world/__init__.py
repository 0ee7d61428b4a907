"""The toy world: prompt grammar, renderer (a finite uniform mixture per prompt), the exact teacher
E[x0 | x_t, prompt], and the parser that reads videos back into objects and scores them."""
