{{/*
Names, labels and shared fragments. Selectors use only the stable selectorLabels (never the
chart version: Deployment selectors are immutable).
*/}}

{{- define "sgw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sgw.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sgw.operatorName" -}}
{{- printf "%s-operator" (include "sgw.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sgw.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels shared by every resource; call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "sgw.labels" -}}
helm.sh/chart: {{ include "sgw.chart" .ctx }}
{{ include "sgw.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: stream-gateway
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "sgw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sgw.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sgw.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "sgw.gatewayServiceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create -}}
{{- default (include "sgw.fullname" .) .Values.gateway.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.gateway.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sgw.operatorServiceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "sgw.operatorName" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The metrics port lives on the main Service only when that Service is cluster-internal. */}}
{{- define "sgw.metricsOnMainService" -}}
{{- if eq .Values.service.type "ClusterIP" -}}true{{- end -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds: the shutdown sequence is preStop sleep, then SIGTERM, then the
drain, then closing sockets and draining NATS (values.yaml explains it). The grace period is
counted from the deletion, so it must cover preStop + drain + margin; a smaller explicit value
would SIGKILL pods with calls and buffered audio still in them, so it fails the render.
*/}}
{{- define "sgw.terminationGracePeriodSeconds" -}}
{{- $g := .Values.gateway -}}
{{- $needed := add (int $g.preStopSeconds) (int $g.drainSeconds) (int $g.shutdownMarginSeconds) -}}
{{- if kindIs "invalid" $g.terminationGracePeriodSeconds -}}
{{- $needed -}}
{{- else if lt (int $g.terminationGracePeriodSeconds) $needed -}}
{{- fail (printf "gateway.terminationGracePeriodSeconds (%d) must be at least gateway.preStopSeconds + gateway.drainSeconds + gateway.shutdownMarginSeconds = %d; leave it empty to get that sum" (int $g.terminationGracePeriodSeconds) $needed) -}}
{{- else -}}
{{- int $g.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/* The preStop hook: the native sleep action where the cluster has it (1.30+), else exec sleep. */}}
{{- define "sgw.preStop" -}}
{{- if semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version }}
sleep:
  seconds: {{ int .Values.gateway.preStopSeconds }}
{{- else }}
exec:
  command: ["sleep", {{ .Values.gateway.preStopSeconds | toString | quote }}]
{{- end }}
{{- end -}}

{{/*
NATS credential env vars and volume for one component. Call with
(dict "auth" <auth values> "prefix" "SGW_NATS__" | "SGW_OPERATOR_NATS_" "mountPath" <dir>).
*/}}
{{- define "sgw.natsAuthEnv" -}}
{{- $a := .auth -}}
{{- if $a.existingSecret }}
{{- if $a.userKey }}
- name: {{ .prefix }}USER
  valueFrom:
    secretKeyRef: {name: {{ $a.existingSecret | quote }}, key: {{ $a.userKey | quote }}}
{{- end }}
{{- if $a.passwordKey }}
- name: {{ .prefix }}PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $a.existingSecret | quote }}, key: {{ $a.passwordKey | quote }}}
{{- end }}
{{- if $a.tokenKey }}
- name: {{ .prefix }}TOKEN
  valueFrom:
    secretKeyRef: {name: {{ $a.existingSecret | quote }}, key: {{ $a.tokenKey | quote }}}
{{- end }}
{{- if $a.credsKey }}
- name: {{ .prefix }}CREDS_FILE
  value: {{ printf "%s/nats.creds" .mountPath | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Render a resource from a named template, deep-merge the user's `merge` object over it, and print
it. Call with (dict "tpl" "<template name>" "ctx" $ "merge" <map>).
*/}}
{{- define "sgw.render" -}}
{{- $obj := include .tpl .ctx | fromYaml -}}
{{- if hasKey $obj "Error" -}}
{{- fail (printf "internal error rendering %s: %s" .tpl $obj.Error) -}}
{{- end -}}
{{- if .merge -}}
{{- $obj = mustMergeOverwrite $obj (deepCopy .merge) -}}
{{- end -}}
{{- toYaml $obj -}}
{{- end -}}

{{/* Checks that span several values (the schema checks each value on its own). */}}
{{- define "sgw.validate" -}}
{{- $v := .Values -}}
{{- if and $v.autoscaling.enabled (not (kindIs "invalid" $v.autoscaling.targetCPUUtilizationPercentage)) -}}
{{- $req := dig "requests" "cpu" "" ($v.gateway.resources | default dict) -}}
{{- if not $req -}}
{{- fail "autoscaling.targetCPUUtilizationPercentage needs gateway.resources.requests.cpu (utilisation is a percentage of the request); set it, or set the CPU target to null and use autoscaling.streamsPerPod" -}}
{{- end -}}
{{- end -}}
{{- if and $v.autoscaling.enabled (kindIs "invalid" $v.autoscaling.targetCPUUtilizationPercentage) (kindIs "invalid" $v.autoscaling.streamsPerPod) -}}
{{- fail "autoscaling.enabled needs a target: targetCPUUtilizationPercentage and/or streamsPerPod" -}}
{{- end -}}
{{- if and $v.autoscaling.enabled (lt (int $v.autoscaling.maxReplicas) (int $v.autoscaling.minReplicas)) -}}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" -}}
{{- end -}}
{{- if and (not (kindIs "invalid" $v.autoscaling.streamsPerPod)) (not (kindIs "invalid" $v.gateway.maxStreams)) -}}
{{- if ge (int $v.autoscaling.streamsPerPod) (int $v.gateway.maxStreams) -}}
{{- fail "autoscaling.streamsPerPod must be below gateway.maxStreams, or pods refuse streams before the autoscaler adds any" -}}
{{- end -}}
{{- end -}}
{{- if and $v.podDisruptionBudget.enabled (kindIs "invalid" $v.podDisruptionBudget.maxUnavailable) (kindIs "invalid" $v.podDisruptionBudget.minAvailable) -}}
{{- fail "podDisruptionBudget: set maxUnavailable or minAvailable" -}}
{{- end -}}
{{- if eq (int $v.gateway.ports.ws) (int $v.gateway.ports.metrics) -}}
{{- fail "gateway.ports.ws and gateway.ports.metrics must differ" -}}
{{- end -}}
{{- if and $v.nats.auth.existingSecret (not (or $v.nats.auth.userKey $v.nats.auth.tokenKey $v.nats.auth.credsKey)) -}}
{{- fail "nats.auth.existingSecret is set but none of userKey, tokenKey, credsKey" -}}
{{- end -}}
{{- if and (or $v.nats.auth.userKey $v.nats.auth.passwordKey) (not (and $v.nats.auth.userKey $v.nats.auth.passwordKey)) -}}
{{- fail "nats.auth: userKey and passwordKey go together" -}}
{{- end -}}
{{- if and $v.nats.tls.existingSecret (or $v.nats.tls.certKey $v.nats.tls.keyKey) (not (and $v.nats.tls.certKey $v.nats.tls.keyKey)) -}}
{{- fail "nats.tls: certKey and keyKey go together (mutual TLS)" -}}
{{- end -}}
{{- end -}}

{{/*
What the operator does to StreamRoutes and their Secrets: least privilege. A ClusterRole when it
watches every namespace, a Role per namespace otherwise.
*/}}
{{- define "sgw.operatorRouteRules" -}}
# Watch routes, patch them (kopf's finalizer and last-handled annotation).
- apiGroups: [streamgateway.io]
  resources: [streamroutes]
  verbs: [get, list, watch, patch]
# Report Ready/Accepted conditions and observedGeneration.
- apiGroups: [streamgateway.io]
  resources: [streamroutes/status]
  verbs: [get, patch]
# Setting a finalizer needs this where OwnerReferencesPermissionEnforcement is on.
- apiGroups: [streamgateway.io]
  resources: [streamroutes/finalizers]
  verbs: [update]
# Secrets named by spec.auth (bearer token, basic-auth, Twilio auth token): read only, followed for
# rotation; only stored forms of their values reach the route table.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch]
# Kubernetes Events on the StreamRoutes (kopf posts core v1 Events).
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* Cluster-scoped reads kopf itself needs: CRD discovery always, namespaces when cluster-wide. */}}
{{- define "sgw.operatorClusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if not .Values.operator.watchNamespaces }}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- end -}}
