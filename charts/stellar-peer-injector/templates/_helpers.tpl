{{/* Chart name. */}}
{{- define "spi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name. */}}
{{- define "spi.fullname" -}}
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

{{- define "spi.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "spi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "spi.labels" -}}
helm.sh/chart: {{ include "spi.chart" . }}
{{ include "spi.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: admission-webhook
{{- end }}

{{- define "spi.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spi.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Secret with tls.crt / tls.key (and ca.crt in modes helm and cert-manager). */}}
{{- define "spi.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "spi.fullname" .)) .Values.certs.secretName }}
{{- end }}

{{/* cert-manager objects. */}}
{{- define "spi.certName" -}}
{{- printf "%s-serving" (include "spi.fullname" .) }}
{{- end }}

{{- define "spi.extraPeersConfigMap" -}}
{{- printf "%s-extra-peers" (include "spi.fullname" .) }}
{{- end }}

{{/* DNS names of the Service. */}}
{{- define "spi.serviceHosts" -}}
{{- $svc := include "spi.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns (trimSuffix "." .Values.clusterDomain)) | toJson }}
{{- end }}

{{/* The host of webhook.url, without port or IPv6 brackets; "" without a URL. */}}
{{- define "spi.webhookUrlHost" -}}
{{- with .Values.webhook.url }}
{{- $h := (urlParse .).host }}
{{- if hasPrefix "[" $h }}
{{- regexReplaceAll "^\\[([^\\]]*)\\].*$" $h "${1}" }}
{{- else }}
{{- regexReplaceAll ":[0-9]*$" $h "" }}
{{- end }}
{{- end }}
{{- end }}

{{/* cert-manager's CA injector fills the webhook's caBundle: mode cert-manager, unless
  URL mode brings its own webhook.caBundle. */}}
{{- define "spi.injectCA" -}}
{{- if and (eq .Values.certs.mode "cert-manager") (or (not .Values.webhook.url) (not .Values.webhook.caBundle)) }}true{{ end }}
{{- end }}

{{- define "spi.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Checks that fail the render early with a clear message. */}}
{{- define "spi.validate" -}}
{{- if and (eq .Values.certs.mode "secret") (not .Values.certs.secretName) }}
{{- fail "certs.mode=secret needs certs.secretName (a Secret with tls.crt and tls.key)" }}
{{- end }}
{{- if and (eq .Values.certs.mode "secret") (not .Values.webhook.url) (not .Values.certs.caBundle) }}
{{- fail "certs.mode=secret needs certs.caBundle (base64 PEM of the CA that signed the certificate)" }}
{{- end }}
{{- if and .Values.multicluster.enabled (not .Values.multicluster.clusterName) }}
{{- fail "multicluster.enabled needs multicluster.clusterName: this cluster's name as the linked clusters know it (their link Secrets' stellar.org/cluster-name)" }}
{{- end }}
{{- range .Values.multicluster.remoteSecrets }}
{{- if or (not .clusterName) (not .kubeconfig) }}
{{- fail "each multicluster.remoteSecrets entry needs clusterName and kubeconfig (see `stellar-peer-injector remote-secret`)" }}
{{- end }}
{{- end }}
{{- if and .Values.webhook.url (not (hasPrefix "https://" .Values.webhook.url)) }}
{{- fail "webhook.url must start with https://" }}
{{- end }}
{{- end }}

{{/* Label selector of the injector's series in the alert rules (rules/alerts.yaml). */}}
{{- define "spi.ruleSelector" -}}
{{- if .Values.prometheusRule.selector -}}
{{- .Values.prometheusRule.selector -}}
{{- else -}}
job="{{ include "spi.fullname" . }}",namespace="{{ .Release.Namespace }}"
{{- end -}}
{{- end }}
