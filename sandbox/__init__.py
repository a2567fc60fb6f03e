"""Host-level sandbox primitives shared by the runtimes and the builder: a network namespace per sandbox behind
a firewalled bridge (netns.py) and the bridge's iptables rules (firewall.py)."""
