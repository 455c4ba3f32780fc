//! ovs-ofctl compatible text syntax for flows, groups and meters (parse and print).
