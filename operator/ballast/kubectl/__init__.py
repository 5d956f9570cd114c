"""`kubectl ballast`: the incident and CI commands, as a kubectl plugin. It writes annotations and KillSwitch
objects, never a ModelDeployment's spec."""
