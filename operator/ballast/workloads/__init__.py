"""Pure builders of the children of a ModelDeployment: one Deployment and Service per revision."""
