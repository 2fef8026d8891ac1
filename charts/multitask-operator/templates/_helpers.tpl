{{/* Names, labels, images and the operator's RBAC rules, shared by the templates. */}}

{{- define "mto.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name prefix: "<release>-multitask-operator", or the release name when it already contains the chart name. */}}
{{- define "mto.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mto.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mto.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mto.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mto.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: multitask-operator
{{- end }}

{{- define "mto.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mto.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "repository:tag" with the tag defaulting to the chart's appVersion. Call with (list image root). */}}
{{- define "mto.image" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}

{{/* The ClusterRole holding the trainer's rules in cluster-wide mode, bound per namespace. */}}
{{- define "mto.trainerClusterRole" -}}
{{- printf "%s-trainer" (include "mto.fullname" .) }}
{{- end }}

{{/* Namespaces that get the trainer ServiceAccount: the watched ones, or trainer.namespaces in cluster-wide mode. */}}
{{- define "mto.trainerNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- if .Values.trainer.namespaces }}
{{- fail "trainer.namespaces must be empty when watchNamespaces is set: the trainer ServiceAccount is created in every watched namespace" }}
{{- end }}
{{- toJson .Values.watchNamespaces }}
{{- else }}
{{- toJson .Values.trainer.namespaces }}
{{- end }}
{{- end }}

{{/*
The operator's rules in each watched namespace; tests/support/rbac_needs.py
(scope "namespace") lists the same permissions with why, and a test keeps them equal.
*/}}
{{- define "mto.namespaceRules" -}}
# Watch MultiTaskDeployments and read each one per pass; kopf patches its annotations.
- apiGroups: ["multitask.dev"]
  resources: ["multitaskdeployments"]
  verbs: ["get", "list", "watch", "patch"]
# Write status: observedGeneration, conditions, per-task rows.
- apiGroups: ["multitask.dev"]
  resources: ["multitaskdeployments/status"]
  verbs: ["patch"]
# Children's ownerReferences set blockOwnerDeletion, authorised as an update of the
# owner's finalizers where OwnerReferencesPermissionEnforcement is on (e.g. OpenShift).
- apiGroups: ["multitask.dev"]
  resources: ["multitaskdeployments/finalizers"]
  verbs: ["update"]
# Events on each condition transition; the Job controller's FailedCreate Events say why
# an unfinished Job has no pods.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
# Profiling, baseline, training and evaluation Jobs; a finished Job whose result is
# gone is deleted so that it runs again.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "create", "delete"]
# The termination state of a failed Job's pods, for the reason; the ready vLLM pods, to load new adapters into them.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# Step configs handed to Jobs, the results Jobs write back (read by list), and the task catalogue the gateway reads (patched when a new adapter set is served).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["list", "watch", "create", "patch"]
# The serving Deployment (TGI or vLLM) and the task gateway's Deployment, replaced whole
# when their rendered spec changes.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "update"]
# The serving Service, the task gateway's Service, and the headless Service giving a
# multi-node training step's pods DNS names.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["create"]
# Each resource's engine API key, derived by the operator, read only by its serving
# and gateway pods: the operator never reads a Secret.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create", "patch"]
# The serving pods' NetworkPolicy: only the gateway and the operator reach the engine.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["create"]
{{- if eq .Values.serving.router "inferencePool" }}
# serving.router inferencePool: each resource's InferencePool over its vLLM pods.
- apiGroups: ["inference.networking.k8s.io"]
  resources: ["inferencepools"]
  verbs: ["create", "patch"]
# serving.router inferencePool: the rewrite of each task's name to its adapter, patched when a new adapter set is served.
- apiGroups: ["llm-d.ai"]
  resources: ["inferencemodelrewrites"]
  verbs: ["create", "patch"]
{{- end }}
{{- end }}

{{- define "mto.clusterRules" -}}
# kopf scans the CRDs to discover the resources it serves.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}

{{/* The trainer ServiceAccount's rules (rbac_needs.TRAINER_NEEDS). */}}
{{- define "mto.trainerRules" -}}
# A Job writes its result ConfigMap (replaced when a retried pod writes it again).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create", "update"]
{{- end }}
