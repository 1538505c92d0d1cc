"""
The pages, one area per module, each a Klein app of its own (see
L{monitor.web.pages.base} for what they share and L{monitor.web.ui} for how
they are mounted): C{auth} (sign-in, setup, account), C{dashboard}
(with the Stories panel), C{live}, C{map}, C{topics}, C{alerts}, C{posts}
(search and export), C{models} (corrections and learned models), C{sources}
and C{admin}.
"""
