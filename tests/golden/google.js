/** @type {AppTypes.Config} */
// OHIF viewer 3.13.2 configuration for project ohif-golden-team, written by `provision config`
// for Google Cloud Healthcare. Regenerate it rather than editing it; it holds no secret.
window.config = {
  // The viewer is served at the root of its origin.
  routerBasename: '/',
  enableGoogleCloudAdapter: false,
  showWarningMessageForCrossOrigin: true,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  // Sign in with Google (OAuth web client of this project; the client ID is public).
  // OHIF uses the first entry only.
  oidc: [
    {
      authority: 'https://accounts.google.com',
      client_id: '123456789012-abc123def456.apps.googleusercontent.com',
      redirect_uri: '/callback',
      response_type: 'id_token token',
      scope: 'email profile openid https://www.googleapis.com/auth/cloudplatformprojects.readonly https://www.googleapis.com/auth/cloud-healthcare',
      // google.js names /logout-redirect.html, which the released viewer does not ship;
      // '/' is OHIF's own default.
      post_logout_redirect_uri: '/',
      revoke_uri: 'https://accounts.google.com/o/oauth2/revoke?token=',
      automaticSilentRenew: true,
      revokeAccessTokenOnSignout: true,
    },
  ],
  extensions: [],
  modes: [],
  showStudyList: true,
  defaultDataSourceName: 'primary',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'primary',
      configuration: {
        friendlyName: 'imaging/primary (ohif-golden-team)',
        name: 'GCP',
        wadoUriRoot: 'https://healthcare.googleapis.com/v1/projects/ohif-golden-team/locations/us-central1/datasets/imaging/dicomStores/primary/dicomWeb',
        qidoRoot: 'https://healthcare.googleapis.com/v1/projects/ohif-golden-team/locations/us-central1/datasets/imaging/dicomStores/primary/dicomWeb',
        wadoRoot: 'https://healthcare.googleapis.com/v1/projects/ohif-golden-team/locations/us-central1/datasets/imaging/dicomStores/primary/dicomWeb',
        qidoSupportsIncludeField: true,
        imageRendering: 'wadors',
        // 'wadors': thumbnails are drawn from frames/1, which the viewer fetches anyway.
        // 'rendered' (google.js) adds a series-level /rendered call per series, answered
        // by a fallback to instance level where series level is not served.
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: true,
        supportsWildcard: false,
        dicomUploadEnabled: true,
        // Google expects the multipart Accept without quotes; unquoted it is also a
        // CORS-safelisted header, which saves one preflight per frame.
        omitQuotationForMultipartRequest: true,
        bulkDataURI: { enabled: true },
        // Lets the study list browse projects, datasets and stores of this account.
        configurationAPI: 'ohif.dataSourceConfigurationAPI.google',
      },
    },
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'teaching.v2',
      configuration: {
        friendlyName: 'imaging/teaching.v2 (ohif-golden-team)',
        name: 'GCP',
        wadoUriRoot: 'https://healthcare.googleapis.com/v1/projects/ohif-golden-team/locations/us-central1/datasets/imaging/dicomStores/teaching.v2/dicomWeb',
        qidoRoot: 'https://healthcare.googleapis.com/v1/projects/ohif-golden-team/locations/us-central1/datasets/imaging/dicomStores/teaching.v2/dicomWeb',
        wadoRoot: 'https://healthcare.googleapis.com/v1/projects/ohif-golden-team/locations/us-central1/datasets/imaging/dicomStores/teaching.v2/dicomWeb',
        qidoSupportsIncludeField: true,
        imageRendering: 'wadors',
        // 'wadors': thumbnails are drawn from frames/1, which the viewer fetches anyway.
        // 'rendered' (google.js) adds a series-level /rendered call per series, answered
        // by a fallback to instance level where series level is not served.
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: true,
        supportsWildcard: false,
        dicomUploadEnabled: true,
        // Google expects the multipart Accept without quotes; unquoted it is also a
        // CORS-safelisted header, which saves one preflight per frame.
        omitQuotationForMultipartRequest: true,
        bulkDataURI: { enabled: true },
        // Lets the study list browse projects, datasets and stores of this account.
        configurationAPI: 'ohif.dataSourceConfigurationAPI.google',
      },
    },
  ],
};
