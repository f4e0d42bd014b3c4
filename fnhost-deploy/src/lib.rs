//! fnhost-deploy: continuous deployment of function apps.
