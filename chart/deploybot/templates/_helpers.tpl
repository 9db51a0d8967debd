{{/* Names and labels */}}
{{- define "deploybot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "deploybot.fullname" -}}
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

{{- define "deploybot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "deploybot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "deploybot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "deploybot.labels" -}}
helm.sh/chart: {{ include "deploybot.chart" . }}
{{ include "deploybot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "deploybot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "deploybot.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "deploybot.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Where the bot keeps its state; the image's WORKDIR and the volume's mount point. */}}
{{- define "deploybot.stateDir" -}}/var/lib/deploybot{{- end -}}

{{- define "deploybot.configMapName" -}}
{{- default (include "deploybot.fullname" .) .Values.existingConfigMap -}}
{{- end -}}

{{- define "deploybot.claimName" -}}
{{- default (include "deploybot.fullname" .) .Values.persistence.existingClaim -}}
{{- end -}}

{{/* True ("true") when the state volume can only be mounted by one node at a time. */}}
{{- define "deploybot.singleWriterVolume" -}}
{{- if and .Values.persistence.enabled (not .Values.persistence.existingClaim) (not (has "ReadWriteMany" .Values.persistence.accessModes)) -}}
true
{{- end -}}
{{- end -}}

{{/*
The bot's config file: .Values.config with what the pod's layout decides set on top
(state dir = the volume, listen on all addresses at the http port) and the store /
leader election values.
*/}}
{{- define "deploybot.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $forced := dict
      "bot" (dict "state_dir" (include "deploybot.stateDir" .))
      "http" (dict "listen" (printf "0.0.0.0:%d" (int .Values.http.port))) -}}
{{- if .Values.store.url -}}
{{- $store := dict "url" .Values.store.url -}}
{{- if .Values.store.passwordSecret.name -}}
{{- $_ := set $store "password_env" "DEPLOYBOT_DB_PASSWORD" -}}
{{- end -}}
{{- $_ := set $forced "store" $store -}}
{{- end -}}
{{- if .Values.leaderElection.enabled -}}
{{- $_ := set $forced "leader_election" (dict "backend" .Values.leaderElection.backend "lease_seconds" (int .Values.leaderElection.leaseSeconds)) -}}
{{- end -}}
{{- toYaml (mergeOverwrite $cfg $forced) -}}
{{- end -}}

{{/* A kubeconfig that authenticates with the pod's ServiceAccount token (no secret in it). */}}
{{- define "deploybot.kubeconfig" -}}
apiVersion: v1
kind: Config
clusters:
  - name: {{ .Values.kubeconfig.context }}
    cluster:
      server: https://kubernetes.default.svc
      certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
users:
  - name: {{ .Values.kubeconfig.context }}
    user:
      tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
contexts:
  - name: {{ .Values.kubeconfig.context }}
    context:
      cluster: {{ .Values.kubeconfig.context }}
      user: {{ .Values.kubeconfig.context }}
      namespace: {{ .Release.Namespace }}
current-context: {{ .Values.kubeconfig.context }}
{{- end -}}

{{/* Combinations that cannot work: fail the render with the reason. */}}
{{- define "deploybot.validate" -}}
{{- $replicas := int .Values.replicaCount -}}
{{- if gt $replicas 1 -}}
{{- $needs := list -}}
{{- if not .Values.store.url -}}
{{- $needs = append $needs "an external PostgreSQL store: set store.url (and store.passwordSecret); the default SQLite store lives on one pod's volume and cannot be shared between replicas" -}}
{{- end -}}
{{- if not .Values.leaderElection.enabled -}}
{{- $needs = append $needs "leaderElection.enabled=true: otherwise every replica would answer in chat and run deploys" -}}
{{- end -}}
{{- if include "deploybot.singleWriterVolume" . -}}
{{- $needs = append $needs "no ReadWriteOnce volume shared by the replicas: set persistence.enabled=false (the store is in PostgreSQL) or persistence.accessModes=[ReadWriteMany]" -}}
{{- end -}}
{{- if $needs -}}
{{- fail (printf "replicaCount=%d needs %s" $replicas (join "; and " $needs)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.leaderElection.enabled (eq .Values.leaderElection.backend "postgres") (not .Values.store.url) -}}
{{- fail "leaderElection.backend=postgres needs store.url (a PostgreSQL store)." -}}
{{- end -}}
{{- if and (not .Values.persistence.enabled) (not .Values.store.url) -}}
{{- fail "persistence.enabled=false without store.url would keep the SQLite store (SAL, locks, deploys in flight) in an emptyDir that is lost on every restart: enable persistence or set store.url." -}}
{{- end -}}
{{- end -}}
