"""Federated fine-tuning of a dual encoder's image projection head (Flower strategies).

:mod:`vlmtrust.federated.fedtune` — FedAvg / FedProx over clients whose data is split by a
Dirichlet(α) prior over classes, against centralised fine-tuning with the same budget. Needs
Flower (``pip install 'vlmtrust[federated]'``, kept out of ``all``: its pins would
downgrade typer and rich); importing this package does not import it. With ``dp_epsilon``
every client trains with Opacus DP-SGD (extra ``privacy-train``).

:mod:`vlmtrust.federated.membership` — the membership-inference AUC (the
``privacy/membership_inference`` probe's attacks) of the federated head and of the centralised
one, members being the clients' training data.
"""
